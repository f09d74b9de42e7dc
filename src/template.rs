//! Compiled templates and the types every renderer shares: which kind of
//! file (`RenderKind`), the machine-facing URLs (`Urls`), a run's context
//! (`RunCtx`), the compiled set (`Templates`: minijinja, strict undefined, no
//! auto-escape, trailing newline kept). A leaf of the pure core: the config
//! loader (`config::templates`) reads the files and hands their (name,
//! source) pairs to [`Templates::add`]; `inventory` holds the compiled set,
//! `render` builds each system's context and renders. No I/O.

use crate::model::Mac;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use std::collections::BTreeSet;
/// The built-in iPXE script that boots a profile's installer.
pub const BUILTIN_IPXE: &str = "builtin/ipxe-install.ipxe";
/// iPXE macros for custom `ipxe_template`s: `{% from "builtin/ipxe.j2"
/// import fetch %}` then `{{ fetch("kernel", urls.kernel ~ " " ~ kernel_args) }}`.
pub const BUILTIN_IPXE_MACROS: &str = "builtin/ipxe.j2";
/// The generic script at `/boot.ipxe` (context: `base`): chain to the
/// machine's own script, retrying like the downloads.
pub const BUILTIN_GENERIC_IPXE: &str = "builtin/boot.ipxe";

/// `fetch(command, args, label)` (6 tries, 2 s apart by default: long
/// enough for a restarted daemon to listen again): run an iPXE download command (`kernel`,
/// `initrd`, `chain`, `imgfetch`) until it works, `tries` times with
/// `pause` seconds between, saying so on the console; after the last try,
/// `exit 1` (the firmware's next boot device; the run's deadline notices).
// Unrolled: no settings arithmetic (`inc` cannot store a number in every
// iPXE build: QEMU's 2019 NIC ROM answers "Could not store"), only `||`,
// `goto`, `echo`, `sleep`, which every iPXE since 2011 has.
const BUILTIN_IPXE_MACROS_SRC: &str = r#"{% macro fetch(command, args, label, tries=6, pause=2) -%}
{% for i in range(1, tries + 1) -%}
{{ command }} {{ args }} && goto rb-{{ label }}-ok ||
{% if i < tries -%}
echo rackboot: {{ label }} download failed (try {{ i }} of {{ tries }}): again in {{ pause }} s
sleep {{ pause }}
{% endif -%}
{% endfor -%}
echo rackboot: {{ label }} download failed {{ tries }} times: giving up (the run will power-cycle this machine)
sleep 5
exit 1
:rb-{{ label }}-ok
{%- endmacro %}
"#;

const BUILTIN_GENERIC_IPXE_SRC: &str = r#"#!ipxe
{% from "builtin/ipxe.j2" import fetch -%}
# rackboot: chain to this machine's own script
{{ fetch("chain", base ~ "/ipxe/${net0/mac:hexhyp}", "script") }}
"#;

const BUILTIN_IPXE_SRC: &str = r#"#!ipxe
{% from "builtin/ipxe.j2" import fetch -%}
echo rackboot: {{ system.name }} ({{ system.mac }}) profile {{ profile.name }} run {{ run.id }}
{{ fetch("kernel", urls.kernel ~ (profile.initrd_names | map("format_initrd") | join("")) ~ " " ~ kernel_args, "kernel") }}
{% for u in urls.initrd %}{{ fetch("initrd", u, "initrd" ~ loop.index) }}
{% endfor %}boot
"#;

/// The built-in GRUB config that boots a profile's installer (`loader =
/// "grub"`), served over TFTP as `grub/grub.cfg-<mac>`.
pub const BUILTIN_GRUB: &str = "builtin/grub.cfg";

/// Kernel and initrd over TFTP from the server GRUB came from (paths inside
/// the TFTP roots: the boot dir is one), retried like iPXE's `fetch`: 6
/// tries, 2 s apart, then `exit 1` (the run's deadline notices). Each kernel
/// argument is single-quoted (`grub_words`): GRUB would otherwise expand
/// `$…` and, with its regexp module, glob `?`/`*` in URLs.
const BUILTIN_GRUB_SRC: &str = r#"# rackboot: {{ system.name }} ({{ system.mac }}) profile {{ profile.name }} run {{ run.id }}
set timeout=0
echo 'rackboot: {{ system.name }} ({{ system.mac }}) profile {{ profile.name }} run {{ run.id }}'
for rb_try in 1 2 3 4 5 6; do
  if linux /{{ profile.kernel }}{% if kernel_args %} {{ kernel_args | grub_words }}{% endif %}; then
{%- if profile.initrd %}
    if initrd{% for i in profile.initrd %} /{{ i }}{% endfor %}; then
      boot
    fi
{%- else %}
    boot
{%- endif %}
  fi
  echo "rackboot: kernel/initrd download failed (try $rb_try of 6): again in 2 s"
  sleep 2
done
echo 'rackboot: kernel/initrd download failed 6 times: giving up (the run will power-cycle this machine)'
sleep 5
exit 1
"#;

/// `s` as GRUB script words: split on whitespace, each single-quoted
/// (`'` itself as `'\''`), so GRUB passes them to the kernel verbatim.
pub fn grub_words(s: &str) -> String {
    s.split_whitespace()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What to render for a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenderKind {
    /// The per-MAC iPXE script that boots the installer.
    Ipxe,
    /// The per-MAC GRUB config that boots the installer (`loader = "grub"`).
    Grub,
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
        RenderKind::Grub,
        RenderKind::Config,
        RenderKind::UserData,
        RenderKind::MetaData,
        RenderKind::VendorData,
        RenderKind::KernelArgs,
    ];

    pub fn parse(s: &str) -> Option<RenderKind> {
        Some(match s {
            "ipxe" => RenderKind::Ipxe,
            "grub" | "grub.cfg" => RenderKind::Grub,
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
            RenderKind::Grub => "grub",
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

    /// Where a machine POSTs its hardware facts (JSON, `api::facts::Facts`).
    pub fn facts(&self, mac: &Mac, token: &str) -> String {
        format!("{}/facts/{}?token={}", self.base, mac.hyphenated(), token)
    }
}

/// Run facts visible to templates. At `check`/`render` time a preview run is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCtx {
    pub id: String,
    pub token: String,
    /// A profile override for this run (default: the system's profile).
    pub profile: Option<String>,
    /// A netboot that stays on (no run): callbacks do not end it.
    pub persistent: bool,
    /// The machine's last reported hardware facts (`facts` in templates;
    /// `{}` when it has none).
    pub facts: Option<std::sync::Arc<serde_json::Value>>,
}

impl RunCtx {
    pub fn preview() -> RunCtx {
        RunCtx {
            id: "preview".into(),
            token: "preview".into(),
            profile: None,
            persistent: false,
            facts: None,
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
    // ` initrd=NAME`: the kernel argument naming an initrd (UEFI boot).
    env.add_filter("format_initrd", |s: String| format!(" initrd={s}"));
    env.add_filter("grub_words", |s: String| grub_words(&s));
    env.add_filter("shell_quote", |s: String| shell_quote(&s));
    env
}

impl Templates {
    pub fn empty() -> Templates {
        let mut env = new_env();
        env.add_template_owned(BUILTIN_IPXE_MACROS, BUILTIN_IPXE_MACROS_SRC)
            .expect("builtin template compiles");
        env.add_template_owned(BUILTIN_IPXE, BUILTIN_IPXE_SRC)
            .expect("builtin template compiles");
        env.add_template_owned(BUILTIN_GENERIC_IPXE, BUILTIN_GENERIC_IPXE_SRC)
            .expect("builtin template compiles");
        env.add_template_owned(BUILTIN_GRUB, BUILTIN_GRUB_SRC)
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

    pub(crate) fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String, RenderError> {
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

/// `s` as one POSIX shell word: single-quoted, inner `'` as `'\''`. The
/// template filter `shell_quote`, for a value from the machine (a fact) that
/// must go into a shell line of a kickstart `%pre` or a script.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
