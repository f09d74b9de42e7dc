//! Template rendering: kickstart / preseed / autoinstall / cloud-init / iPXE
//! from minijinja templates. Pure: the config loader (`config::templates`)
//! reads the template files and hands their (name, source) pairs to
//! [`Templates::add`]; compiling and rendering do no I/O. Undefined
//! variables are errors.

use crate::inventory::{Inventory, Profile, System};
use crate::model::Mac;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::json;
use std::collections::BTreeSet;

/// The built-in iPXE script that boots a profile's installer.
pub const BUILTIN_IPXE: &str = "builtin/ipxe-install.ipxe";
const BUILTIN_IPXE_SRC: &str = "#!ipxe
echo rackboot: {{ system.name }} ({{ system.mac }}) profile {{ profile.name }} run {{ run.id }}
kernel {{ urls.kernel }}{% for n in profile.initrd_names %} initrd={{ n }}{% endfor %} {{ kernel_args }}
{% for u in urls.initrd %}initrd {{ u }}
{% endfor %}boot
";

/// What to render for a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenderKind {
    /// The per-MAC iPXE script that boots the installer.
    Ipxe,
    /// The installer config: kickstart, preseed or script.
    Config,
    UserData,
    MetaData,
    VendorData,
    /// The rendered kernel command line.
    KernelArgs,
}

impl RenderKind {
    pub const ALL: &'static [RenderKind] = &[
        RenderKind::Ipxe,
        RenderKind::Config,
        RenderKind::UserData,
        RenderKind::MetaData,
        RenderKind::VendorData,
        RenderKind::KernelArgs,
    ];

    pub fn parse(s: &str) -> Option<RenderKind> {
        Some(match s {
            "ipxe" => RenderKind::Ipxe,
            "config" | "kickstart" | "ks" | "preseed" | "script" | "autoinstall" => {
                RenderKind::Config
            }
            "user-data" => RenderKind::UserData,
            "meta-data" => RenderKind::MetaData,
            "vendor-data" => RenderKind::VendorData,
            "kernel-args" | "cmdline" => RenderKind::KernelArgs,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RenderKind::Ipxe => "ipxe",
            RenderKind::Config => "config",
            RenderKind::UserData => "user-data",
            RenderKind::MetaData => "meta-data",
            RenderKind::VendorData => "vendor-data",
            RenderKind::KernelArgs => "kernel-args",
        }
    }
}

/// A template failure: which template, why (with line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{template}: {message}")]
pub struct RenderError {
    pub template: String,
    pub message: String,
}

/// Machine-facing URLs. Stable: they are baked into scripts and installers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    pub base: String,
    pub address: std::net::Ipv4Addr,
}

impl Urls {
    /// `base`: the HTTP base URL (`http://10.77.0.1:8080`); `address`: the
    /// server's own address. (`Urls::from(&Settings)` lives in `config`.)
    pub fn new(base: impl Into<String>, address: std::net::Ipv4Addr) -> Urls {
        Urls {
            base: base.into(),
            address,
        }
    }

    pub fn boot_ipxe(&self) -> String {
        format!("{}/boot.ipxe", self.base)
    }
    pub fn ipxe(&self, mac: &Mac) -> String {
        format!("{}/ipxe/{}", self.base, mac.hyphenated())
    }
    pub fn config(&self, mac: &Mac) -> String {
        format!("{}/ks/{}", self.base, mac.hyphenated())
    }
    pub fn nocloud(&self, mac: &Mac) -> String {
        format!("{}/nocloud/{}/", self.base, mac.hyphenated())
    }
    pub fn file(&self, path: &str) -> String {
        format!("{}/boot/{}", self.base, path)
    }
    pub fn done(&self, mac: &Mac, token: &str) -> String {
        format!("{}/done/{}?token={}", self.base, mac.hyphenated(), token)
    }
}

/// Run facts visible to templates. At `check`/`render` time a preview run is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCtx {
    pub id: String,
    pub token: String,
    /// A profile override for this run (default: the system's profile).
    pub profile: Option<String>,
}

impl RunCtx {
    pub fn preview() -> RunCtx {
        RunCtx {
            id: "preview".into(),
            token: "preview".into(),
            profile: None,
        }
    }
}

/// All templates of the templates dir, compiled, plus the built-ins.
pub struct Templates {
    env: Environment<'static>,
    names: BTreeSet<String>,
}

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Installer configs are not HTML: never escape (minijinja would JSON-escape *.yaml).
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("static syntax config"),
    );
    env.add_filter("mac_dashes", |s: String| s.replace(':', "-"));
    env
}

impl Templates {
    pub fn empty() -> Templates {
        let mut env = new_env();
        env.add_template_owned(BUILTIN_IPXE, BUILTIN_IPXE_SRC)
            .expect("builtin template compiles");
        Templates {
            env,
            names: BTreeSet::new(),
        }
    }

    /// Compile one template under `name` (its path in the templates dir).
    pub fn add(&mut self, name: String, src: String) -> Result<(), SyntaxError> {
        match self.env.add_template_owned(name.clone(), src) {
            Ok(()) => {
                self.names.insert(name);
                Ok(())
            }
            Err(e) => Err(SyntaxError {
                line: e.line(),
                detail: e.detail().unwrap_or("").to_string(),
            }),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|s| s.as_str())
    }

    /// Syntax-check an inline template (kernel args, stage commands).
    pub fn check_inline(&self, src: &str) -> Result<(), String> {
        self.env
            .template_from_str(src)
            .map(|_| ())
            .map_err(|e| format!("template syntax error: {}", e.detail().unwrap_or("")))
    }

    fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String, RenderError> {
        let t = self.env.get_template(name).map_err(|e| RenderError {
            template: name.to_string(),
            message: e.to_string(),
        })?;
        t.render(ctx).map_err(|e| RenderError {
            template: name.to_string(),
            message: describe(&e),
        })
    }

    pub fn render_inline(
        &self,
        what: &str,
        src: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, RenderError> {
        self.env.render_str(src, ctx).map_err(|e| RenderError {
            template: what.to_string(),
            message: describe(&e),
        })
    }
}

/// A template that does not compile: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template syntax error: {detail}")]
pub struct SyntaxError {
    pub line: Option<usize>,
    pub detail: String,
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = format!("{}", e.kind());
    if let Some(d) = e.detail() {
        s.push_str(": ");
        s.push_str(d);
    }
    if let Some(l) = e.line() {
        s.push_str(&format!(" (line {l})"));
    }
    s
}

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
                "files": format!("{}/boot", self.urls.base),
            },
            "server": {
                "address": self.urls.address.to_string(),
                "http": self.urls.base,
            },
            "run": { "id": run.id, "token": run.token },
            "vars": vars,
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
