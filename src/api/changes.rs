//! Request bodies of the admin edits: the JSON of `POST`/`PUT /api/v1/systems|profiles`
//! and what the CLI builds from its flags. One definition for the server, the CLI and the tests.

use crate::config::fields::{self, Edit};
use crate::config::wire::ProfileWire;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A change to a system. For `add`, `macs`, `ip` and `profile` are needed.
/// For `edit`, only what is given changes: `macs` replaces the list,
/// `add_macs` / `remove_macs` edit it; `unset` removes optional keys
/// (`hostname`, `netmask`, `gateway`, `dns`, `domain`, `loader`, `bmc`).
/// This is also the JSON body of `POST /api/v1/systems` and `PUT /api/v1/systems/{name}`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemChange {
    /// Only in `POST` bodies (the name is in the path otherwise).
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub macs: Option<Vec<String>>,
    #[serde(default)]
    pub add_macs: Vec<String>,
    #[serde(default)]
    pub remove_macs: Vec<String>,
    pub ip: Option<String>,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub dns: Option<Vec<String>>,
    pub domain: Option<String>,
    pub profile: Option<String>,
    /// `ipxe` or `grub`, over the profile's.
    pub loader: Option<String>,
    pub bmc: Option<BmcChange>,
    /// Template variables to set (a JSON `null` removes one).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub unset_vars: Vec<String>,
    #[serde(default)]
    pub unset: Vec<String>,
    /// `POST` only: take the MAC (and arch, as the var `arch`) from this
    /// discovered machine's record, and forget the record once added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_discovered: Option<String>,
}

impl SystemChange {
    /// Takes a discovered machine's MAC (as the system's only MAC) and its
    /// arch (as the var `arch`, unless the change sets one). Refused when the
    /// change names MACs itself: one source for the MAC. The API's
    /// `from_discovered` and `rackboot systems add --from-discovered` both
    /// come here.
    pub fn adopt(&mut self, d: &super::Discovered) -> Result<(), String> {
        if self.macs.is_some() || !self.add_macs.is_empty() {
            return Err("give either a discovered MAC or MACs, not both".into());
        }
        self.macs = Some(vec![d.mac.clone()]);
        if let Some(arch) = &d.arch {
            self.vars
                .entry("arch".into())
                .or_insert_with(|| serde_json::Value::String(arch.clone()));
        }
        Ok(())
    }
}

/// BMC settings. A password is never accepted inline: `password_file` or `password_env`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcChange {
    pub kind: Option<String>,
    pub address: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    /// Refused with a clear message (it is here so it is not an "unknown field").
    pub password: Option<serde_json::Value>,
    pub cipher_suites: Option<Vec<u8>>,
    pub insecure_tls: Option<bool>,
    pub system_id: Option<String>,
}

/// A change to a profile. The keys it sets are the profile file's own, typed
/// as in the file (`set`, a `config::wire::ProfileWire`: one definition);
/// `timeouts` and `vars` are edited key by key, `unset` removes top-level keys
/// (`parent`, `template`, `timeouts`, `stages`, ...). Stages are edited by
/// hand in the file.
///
/// On the wire (the JSON body of `POST /api/v1/profiles` and `PUT
/// /api/v1/profiles/{name}`) it is one flat object: `name`, the keys of `set`
/// that are given, `timeouts`, `vars`, `unset_vars`, `unset`. Which keys of
/// the file can be set comes from `config::fields` (an `Edit::Value` key).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProfileChange {
    /// Only in `POST` bodies.
    pub name: Option<String>,
    /// The file keys to set (`timeouts`, `vars` and `stages` stay `None`).
    pub set: ProfileWire,
    /// Phase deadlines to set, e.g. `install = "30m"`.
    pub timeouts: BTreeMap<String, String>,
    /// Template variables to set (a JSON `null` removes one).
    pub vars: BTreeMap<String, serde_json::Value>,
    pub unset_vars: Vec<String>,
    pub unset: Vec<String>,
}

/// The change's own keys beside the file's.
const PROFILE_CHANGE_VERBS: [&str; 5] = ["name", "timeouts", "vars", "unset_vars", "unset"];

fn settable_profile_key(k: &str) -> bool {
    fields::PROFILE
        .iter()
        .any(|f| f.key == k && matches!(f.edit, Edit::Value { .. }))
}

impl Serialize for ProfileChange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut m = match serde_json::to_value(&self.set).map_err(S::Error::custom)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        m.retain(|k, v| !v.is_null() && settable_profile_key(k));
        if let Some(n) = &self.name {
            m.insert("name".into(), n.as_str().into());
        }
        let j = |r: serde_json::Result<Value>| r.map_err(S::Error::custom);
        m.insert("timeouts".into(), j(serde_json::to_value(&self.timeouts))?);
        m.insert("vars".into(), j(serde_json::to_value(&self.vars))?);
        m.insert(
            "unset_vars".into(),
            j(serde_json::to_value(&self.unset_vars))?,
        );
        m.insert("unset".into(), j(serde_json::to_value(&self.unset))?);
        m.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProfileChange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut m = Map::<String, Value>::deserialize(d)?;
        fn take<T: serde::de::DeserializeOwned + Default, E: Error>(
            m: &mut Map<String, Value>,
            k: &str,
        ) -> Result<T, E> {
            match m.remove(k) {
                None | Some(Value::Null) => Ok(T::default()),
                Some(v) => serde_json::from_value(v).map_err(|e| E::custom(format!("{k}: {e}"))),
            }
        }
        let mut ch = ProfileChange {
            name: take(&mut m, "name")?,
            timeouts: take(&mut m, "timeouts")?,
            vars: take(&mut m, "vars")?,
            unset_vars: take(&mut m, "unset_vars")?,
            unset: take(&mut m, "unset")?,
            set: ProfileWire::default(),
        };
        // Each file key on its own: an error names its key.
        for (k, v) in m {
            if !settable_profile_key(&k) {
                let expected: Vec<String> = PROFILE_CHANGE_VERBS
                    .iter()
                    .copied()
                    .chain(
                        fields::PROFILE
                            .iter()
                            .filter(|f| matches!(f.edit, Edit::Value { .. }))
                            .map(|f| f.key),
                    )
                    .map(|k| format!("`{k}`"))
                    .collect();
                let why = match fields::PROFILE.iter().find(|f| f.key == k) {
                    Some(fields::ProfileField {
                        edit: Edit::FileOnly(why) | Edit::Refused(why),
                        ..
                    }) => format!(" ({why})"),
                    _ => String::new(),
                };
                return Err(D::Error::custom(format!(
                    "unknown field `{k}`{why}, expected one of {}",
                    expected.join(", ")
                )));
            }
            if v.is_null() {
                continue;
            }
            let one: ProfileWire =
                serde_json::from_value(Value::Object(Map::from_iter([(k.clone(), v)])))
                    .map_err(|e| D::Error::custom(format!("{k}: {e}")))?;
            for f in fields::PROFILE {
                if f.key == k {
                    (f.copy)(&mut ch.set, &one);
                }
            }
        }
        Ok(ch)
    }
}
