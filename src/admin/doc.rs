//! `toml_edit` document helpers: read, parse, set and remove keys and tables keeping comments.

use super::*;
/// Read `path` (missing = empty) and parse it as an editable document.
pub(super) fn read_doc(
    settings: &Settings,
    path: &Path,
) -> Result<(String, DocumentMut), AdminError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err("cannot read", path, e)),
    };
    let doc = parse_doc(settings, path, &text)?;
    Ok((text, doc))
}

pub(super) fn parse_doc(
    settings: &Settings,
    path: &Path,
    text: &str,
) -> Result<DocumentMut, AdminError> {
    text.parse::<DocumentMut>().map_err(|e| {
        let line = e
            .span()
            .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
        AdminError::Broken {
            preexisting: vec![ConfigError {
                file: config::show(&settings.config_dir, path),
                key: line.map(|l| format!("line {l}")).unwrap_or_default(),
                reason: format!(
                    "not valid TOML: {}",
                    e.message().lines().next().unwrap_or("")
                ),
            }],
            caused: Vec::new(),
        }
    })
}

// toml_edit helpers

/// Set `key` to `v`, keeping the key's comments and the old value's decoration
/// (spacing, trailing comment).
pub(super) fn set_value(t: &mut dyn TableLike, key: &str, mut v: Value) {
    match t.get_mut(key) {
        Some(Item::Value(old)) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        Some(item) => *item = Item::Value(v),
        None => {
            t.insert(key, Item::Value(v));
        }
    }
}

/// [`set_value`] for each string that is given.
pub(super) fn set_strings<const N: usize>(t: &mut dyn TableLike, kv: [(&str, &Option<String>); N]) {
    for (k, v) in kv {
        if let Some(v) = v {
            set_value(t, k, v.as_str().into());
        }
    }
}

pub(super) fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
    let mut a = toml_edit::Array::new();
    for i in items {
        a.push(i.as_ref());
    }
    Value::Array(a)
}

pub(super) fn json_to_toml(v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::String(s) => s.as_str().into(),
        J::Bool(b) => (*b).into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().ok_or("number out of range")?.into(),
        },
        J::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for x in a {
                arr.push(json_to_toml(x)?);
            }
            Value::Array(arr)
        }
        J::Object(o) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in o {
                t.insert(k, json_to_toml(x)?);
            }
            Value::InlineTable(t)
        }
        J::Null => return Err("null is not a TOML value".into()),
    })
}

/// The table-like at `key` in `parent`, created (as a `[header]` table, or an
/// inline table inside an inline parent) when missing.
pub(super) fn sub_table<'a>(
    parent: &'a mut Item,
    key: &str,
    prefix: &str,
) -> Result<&'a mut dyn TableLike, String> {
    let inline = parent.is_inline_table();
    let t = parent
        .as_table_like_mut()
        .ok_or_else(|| "not a table".to_string())?;
    if t.get(key).is_none() {
        let item = if inline {
            Item::Value(Value::InlineTable(toml_edit::InlineTable::new()))
        } else {
            let mut nt = Table::new();
            nt.decor_mut().set_prefix(prefix);
            Item::Table(nt)
        };
        t.insert(key, item);
    }
    t.get_mut(key)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| format!("{key} is not a table"))
}

pub(super) fn positions(t: &Table, out: &mut Vec<isize>) {
    if let Some(p) = t.position() {
        if !t.is_implicit() && !t.is_dotted() {
            out.push(p);
        }
    }
    for (_, it) in t.iter() {
        if let Item::Table(sub) = it {
            positions(sub, out);
        }
    }
}

pub(super) fn table_at_mut(t: &mut Table, pos: isize) -> Option<&mut Table> {
    if t.position() == Some(pos) && !t.is_implicit() && !t.is_dotted() {
        return Some(t);
    }
    for (_, it) in t.iter_mut() {
        if let Item::Table(sub) = it {
            if let Some(found) = table_at_mut(sub, pos) {
                return Some(found);
            }
        }
    }
    None
}

pub(super) fn is_blank(l: &str) -> bool {
    l.trim().is_empty()
}

/// Remove the header table `key` of `parent` (with its sub-tables) from `doc`.
/// Comments directly above its header go with it; a comment paragraph
/// separated from it by a blank line (a file header, a section note) stays,
/// moved onto the next table.
pub(super) fn remove_table(doc: &mut DocumentMut, path: &[&str]) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut removed_positions = Vec::new();
    let mut prefix = String::new();
    {
        let mut t: &mut Table = doc.as_table_mut();
        for p in parents {
            t = match t.get_mut(p).and_then(Item::as_table_mut) {
                Some(x) => x,
                None => return,
            };
        }
        let Some(item) = t.remove(last) else { return };
        if let Item::Table(rt) = &item {
            positions(rt, &mut removed_positions);
            prefix = rt
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_string();
        }
    }
    // The paragraph(s) above the removed entry that are separated from it by a blank line.
    let lines: Vec<&str> = prefix.split_inclusive('\n').collect();
    let keep_upto = lines.iter().rposition(|l| is_blank(l)).map(|i| i + 1);
    let kept: String = match keep_upto {
        Some(n) => lines[..n].concat(),
        None => String::new(),
    };
    if kept.lines().all(is_blank) {
        return;
    }
    let Some(&max_removed) = removed_positions.iter().max() else {
        return;
    };
    let mut all = Vec::new();
    positions(doc.as_table(), &mut all);
    let next = all.into_iter().filter(|p| *p > max_removed).min();
    match next.and_then(|p| table_at_mut(doc.as_table_mut(), p)) {
        Some(nt) => {
            let old = nt
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_string();
            let rest: String = old
                .split_inclusive('\n')
                .skip_while(|l| is_blank(l))
                .collect();
            nt.decor_mut().set_prefix(format!("{kept}{rest}"));
        }
        None => {
            let trailing = doc.trailing().as_str().unwrap_or("").to_string();
            doc.set_trailing(format!("{}{trailing}", kept.trim_end_matches('\n')) + "\n");
        }
    }
}
