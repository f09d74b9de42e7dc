//! The address pool for `dhcp.mode = "pool"`: a pure allocator. No I/O, no
//! clock (every call gets `now`, milliseconds since the epoch, the unit the
//! store uses for `leases.expires_at`).
//!
//! Every address the pool has ever handed out has an [`Entry`] (its holder,
//! state and deadline); addresses without one are *fresh*. Each entry is
//! also in a set ordered by deadline, so "the address that expired longest
//! ago" is the first element of that set. An address is available to a new
//! client when it is fresh, or its entry is free (released / expired) or its
//! deadline has passed (an offer not taken up, a lease not renewed, a
//! decline hold that is over).
//!
//! Choice of address for a client (RFC 2131 4.3.1): its current or previous
//! binding, else the address it asks for (option 50) when available, else a
//! fresh address (lowest first), else the entry that expired longest ago.
//! Addresses reserved in the inventory are never handed out.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::model::Mac;

/// How long an OFFER holds its address for the client.
pub const OFFER_HOLD_MS: i64 = 30_000;
/// How long a DECLINEd address is kept out of use.
pub const DECLINE_HOLD_MS: i64 = 600_000;

/// Pool parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub lease_ms: i64,
    pub offer_hold_ms: i64,
    pub decline_hold_ms: i64,
}

impl PoolConfig {
    pub fn new(start: Ipv4Addr, end: Ipv4Addr, lease_secs: u32) -> PoolConfig {
        PoolConfig {
            start,
            end,
            lease_ms: i64::from(lease_secs) * 1000,
            offer_hold_ms: OFFER_HOLD_MS,
            decline_hold_ms: DECLINE_HOLD_MS,
        }
    }
}

/// What an address's entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Offered to `mac` until the deadline.
    Offered,
    /// Leased to `mac` until the deadline (ACKed, or loaded from the store).
    Leased,
    /// Released or expired; `mac` (if any) is remembered to give it back.
    Free,
    /// Declined (in use by someone else on the wire) until the deadline.
    Declined,
}

/// One address's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub mac: Option<Mac>,
    pub state: State,
    /// Deadline (Offered / Leased / Declined) or when it became free (Free).
    pub until: i64,
}

impl Entry {
    fn available(&self, now: i64) -> bool {
        self.state == State::Free || self.until <= now
    }
}

/// A granted lease: what goes to the store before the ACK leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub expires_at: i64,
}

/// Why a REQUEST cannot be ACKed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Outside the pool range (or reserved for an inventory machine).
    NotInPool,
    /// Held by another client, or declined.
    InUse,
}

/// The allocator state.
#[derive(Debug, Clone)]
pub struct Pool {
    cfg: PoolConfig,
    start: u32,
    end: u32,
    /// Next never-used candidate (fresh addresses are handed out lowest first).
    cursor: u64,
    reserved: HashSet<u32>,
    entries: HashMap<u32, Entry>,
    /// Every entry, by (deadline, address).
    by_time: BTreeSet<(i64, u32)>,
    /// A client's current or previous address.
    by_mac: HashMap<Mac, u32>,
}

impl Pool {
    pub fn new(cfg: PoolConfig) -> Pool {
        let (start, end) = (u32::from(cfg.start), u32::from(cfg.end));
        Pool {
            cfg,
            start,
            end,
            cursor: u64::from(start),
            reserved: HashSet::new(),
            entries: HashMap::new(),
            by_time: BTreeSet::new(),
            by_mac: HashMap::new(),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Addresses in the range, reserved ones excluded.
    pub fn capacity(&self) -> usize {
        let range = (u64::from(self.end) - u64::from(self.start) + 1) as usize;
        range - self.reserved.len()
    }

    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&u32::from(ip))
    }

    /// Addresses that must never be handed out (the inventory's). Leases on
    /// them are not renewed; they stay until they expire.
    pub fn set_reserved(&mut self, ips: impl IntoIterator<Item = Ipv4Addr>) {
        self.reserved = ips
            .into_iter()
            .map(u32::from)
            .filter(|ip| (self.start..=self.end).contains(ip))
            .collect();
    }

    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        self.reserved.contains(&u32::from(ip))
    }

    pub fn entry(&self, ip: Ipv4Addr) -> Option<&Entry> {
        self.entries.get(&u32::from(ip))
    }

    /// The address bound to `mac` (current or previous), with its entry.
    pub fn binding(&self, mac: &Mac) -> Option<(Ipv4Addr, Entry)> {
        let ip = *self.by_mac.get(mac)?;
        Some((Ipv4Addr::from(ip), self.entries[&ip]))
    }

    /// Active leases (deadline after `now`).
    pub fn active_leases(&self, now: i64) -> usize {
        self.entries
            .values()
            .filter(|e| e.state == State::Leased && e.until > now)
            .count()
    }

    /// Addresses that could be offered now: the range less the reserved
    /// ones and those held (offered, leased or declined) past `now`.
    pub fn free(&self, now: i64) -> usize {
        let held = self
            .entries
            .iter()
            .filter(|(ip, e)| !e.available(now) && !self.reserved.contains(ip))
            .count();
        self.capacity().saturating_sub(held)
    }

    /// A lease from the store (at start). Expired ones are remembered as free
    /// so the client gets its address back. Out of range: ignored (`false`).
    pub fn load(&mut self, mac: Mac, ip: Ipv4Addr, expires_at: i64, now: i64) -> bool {
        if !self.in_range(ip) {
            return false;
        }
        let state = if expires_at > now {
            State::Leased
        } else {
            State::Free
        };
        self.put(u32::from(ip), Some(mac), state, expires_at, now);
        true
    }

    /// Set `ip`'s entry, keeping the indexes right: the previous holder of
    /// `ip` loses it, and `mac`'s previous address (if another) is freed.
    fn put(&mut self, ip: u32, mac: Option<Mac>, state: State, until: i64, now: i64) {
        if let Some(old) = self.entries.get(&ip).copied() {
            self.by_time.remove(&(old.until, ip));
            if let Some(m) = old.mac {
                if mac != Some(m) && self.by_mac.get(&m) == Some(&ip) {
                    self.by_mac.remove(&m);
                }
            }
        }
        if let Some(m) = mac {
            if let Some(prev) = self.by_mac.insert(m, ip) {
                if prev != ip {
                    self.set_free(prev, now, true);
                }
            }
        }
        self.entries.insert(ip, Entry { mac, state, until });
        self.by_time.insert((until, ip));
    }

    /// Free `ip`'s entry (as of `at`). `forget`: the holder no longer points at it.
    fn set_free(&mut self, ip: u32, at: i64, forget: bool) {
        if let Some(e) = self.entries.get_mut(&ip) {
            self.by_time.remove(&(e.until, ip));
            if forget {
                e.mac = None;
            }
            e.state = State::Free;
            e.until = e.until.min(at);
            self.by_time.insert((e.until, ip));
        }
    }

    fn usable_for(&self, ip: u32, mac: &Mac, now: i64) -> bool {
        if !(self.start..=self.end).contains(&ip) || self.reserved.contains(&ip) {
            return false;
        }
        match self.entries.get(&ip) {
            None => true,
            Some(e) if e.state == State::Declined => e.until <= now,
            Some(e) => e.mac == Some(*mac) || e.available(now),
        }
    }

    /// The next fresh address (never handed out, not reserved).
    fn next_fresh(&mut self) -> Option<u32> {
        while self.cursor <= u64::from(self.end) {
            let ip = self.cursor as u32;
            self.cursor += 1;
            if !self.reserved.contains(&ip) && !self.entries.contains_key(&ip) {
                return Some(ip);
            }
        }
        None
    }

    /// The entry whose deadline passed longest ago.
    fn oldest_available(&self, now: i64) -> Option<u32> {
        self.by_time
            .iter()
            .take_while(|(until, _)| *until <= now)
            .map(|(_, ip)| *ip)
            .find(|ip| !self.reserved.contains(ip))
    }

    /// DISCOVER: pick an address for `mac` and hold it for the offer.
    /// `None`: the pool is exhausted.
    pub fn offer(&mut self, mac: Mac, requested: Option<Ipv4Addr>, now: i64) -> Option<Ipv4Addr> {
        let hold = now + self.cfg.offer_hold_ms;
        if let Some(&ip) = self.by_mac.get(&mac) {
            let e = self.entries[&ip];
            if !self.reserved.contains(&ip) {
                if e.state == State::Leased && e.until > now {
                    return Some(Ipv4Addr::from(ip));
                }
                self.put(ip, Some(mac), State::Offered, hold.max(e.until), now);
                return Some(Ipv4Addr::from(ip));
            }
        }
        let ip = requested
            .map(u32::from)
            .filter(|ip| self.usable_for(*ip, &mac, now))
            .or_else(|| self.next_fresh())
            .or_else(|| self.oldest_available(now))?;
        self.put(ip, Some(mac), State::Offered, hold, now);
        Some(Ipv4Addr::from(ip))
    }

    /// REQUEST (selecting, init-reboot, renewing, rebinding) for `ip`:
    /// grant or extend the lease. The caller makes it durable before ACKing.
    pub fn ack(&mut self, mac: Mac, ip: Ipv4Addr, now: i64) -> Result<Lease, Refused> {
        let n = u32::from(ip);
        if !self.in_range(ip) || self.reserved.contains(&n) {
            return Err(Refused::NotInPool);
        }
        if !self.usable_for(n, &mac, now) {
            return Err(Refused::InUse);
        }
        let expires_at = now + self.cfg.lease_ms;
        self.put(n, Some(mac), State::Leased, expires_at, now);
        Ok(Lease {
            mac,
            ip,
            expires_at,
        })
    }

    /// RELEASE: `true` when `mac` held `ip` (the lease is gone). The address
    /// stays remembered for `mac` until someone else needs it.
    pub fn release(&mut self, mac: Mac, ip: Ipv4Addr, now: i64) -> bool {
        let n = u32::from(ip);
        match self.entries.get(&n) {
            Some(e) if e.mac == Some(mac) && matches!(e.state, State::Leased | State::Offered) => {
                self.set_free(n, now, false);
                true
            }
            _ => false,
        }
    }

    /// DECLINE: the address is in use on the wire; keep it out of use for a
    /// while. `true` when it was `mac`'s (its lease is gone).
    pub fn decline(&mut self, mac: Mac, ip: Ipv4Addr, now: i64) -> bool {
        let n = u32::from(ip);
        if !self.in_range(ip) {
            return false;
        }
        let held = self.entries.get(&n).is_some_and(|e| e.mac == Some(mac));
        if !held {
            // Only the client we gave the address to may decline it.
            return false;
        }
        self.put(
            n,
            None,
            State::Declined,
            now + self.cfg.decline_hold_ms,
            now,
        );
        if self.by_mac.get(&mac) == Some(&n) {
            self.by_mac.remove(&mac);
        }
        true
    }

    /// Housekeeping: offers and leases past their deadline become free
    /// (remembered for their client). Returns the leases that expired.
    pub fn expire(&mut self, now: i64) -> Vec<Lease> {
        let due: Vec<(i64, u32)> = self
            .by_time
            .iter()
            .take_while(|(until, _)| *until <= now)
            .copied()
            .collect();
        let mut out = Vec::new();
        for (until, ip) in due {
            let e = self.entries[&ip];
            match e.state {
                State::Leased => {
                    if let Some(mac) = e.mac {
                        out.push(Lease {
                            mac,
                            ip: Ipv4Addr::from(ip),
                            expires_at: until,
                        });
                    }
                    self.set_free(ip, until, false);
                }
                State::Offered => self.set_free(ip, until, false),
                State::Declined => self.set_free(ip, until, false),
                State::Free => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }
    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }
    fn pool(first: u8, last: u8) -> Pool {
        let mut c = PoolConfig::new(ip(first), ip(last), 100);
        c.offer_hold_ms = 10;
        c.decline_hold_ms = 50;
        Pool::new(c)
    }

    /// Table: a script of operations and what each must return.
    #[derive(Debug)]
    enum Op {
        Offer(u8, Option<u8>, i64, Option<u8>),
        Ack(u8, u8, i64, Result<(), Refused>),
        Release(u8, u8, i64, bool),
        Decline(u8, u8, i64, bool),
        Expire(i64, usize),
    }
    use Op::*;

    fn run(name: &str, mut p: Pool, ops: &[Op]) {
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Offer(m, req, now, want) => {
                    let got = p.offer(mac(m), req.map(ip), now);
                    assert_eq!(got, want.map(ip), "{name} step {i}: {op:?}");
                }
                Ack(m, a, now, want) => {
                    let got = p.ack(mac(m), ip(a), now).map(|l| {
                        assert_eq!(l.expires_at, now + 100_000);
                    });
                    assert_eq!(got, want, "{name} step {i}: {op:?}");
                }
                Release(m, a, now, want) => {
                    assert_eq!(p.release(mac(m), ip(a), now), want, "{name} step {i}")
                }
                Decline(m, a, now, want) => {
                    assert_eq!(p.decline(mac(m), ip(a), now), want, "{name} step {i}")
                }
                Expire(now, n) => assert_eq!(p.expire(now).len(), n, "{name} step {i}"),
            }
        }
    }

    #[test]
    fn free_counts_held_addresses_outside_reservations() {
        let mut p = pool(10, 14);
        assert_eq!(p.free(0), 5);
        p.set_reserved([ip(14)]);
        assert_eq!(p.free(0), 4);
        assert_eq!(p.offer(mac(1), None, 0), Some(ip(10)));
        p.ack(mac(1), ip(10), 0).unwrap();
        assert_eq!(p.offer(mac(2), None, 0), Some(ip(11)));
        assert_eq!((p.active_leases(1), p.free(1)), (1, 2));
        // The offer's hold (10 ms) lapses; the lease (100 s) does not.
        assert_eq!((p.active_leases(20), p.free(20)), (1, 3));
    }

    #[test]
    fn allocation_table() {
        let ok = Ok(());
        let cases: Vec<(&str, Pool, Vec<Op>)> = vec![
            (
                "distinct fresh addresses, lowest first; same MAC same offer",
                pool(10, 12),
                vec![
                    Offer(1, None, 0, Some(10)),
                    Offer(2, None, 0, Some(11)),
                    Offer(1, None, 1, Some(10)),
                    Ack(1, 10, 2, ok),
                    Ack(2, 11, 2, ok),
                    Offer(1, None, 3, Some(10)),
                ],
            ),
            (
                "requested IP honoured when free, not when held",
                pool(10, 20),
                vec![
                    Offer(1, Some(15), 0, Some(15)),
                    Offer(2, Some(15), 0, Some(10)),
                    Offer(3, Some(99), 0, Some(11)),
                ],
            ),
            (
                "exhaustion, then an unaccepted offer frees after the hold",
                pool(10, 11),
                vec![
                    Offer(1, None, 0, Some(10)),
                    Offer(2, None, 0, Some(11)),
                    Offer(3, None, 5, None),
                    Ack(1, 10, 5, ok),
                    Offer(3, None, 11, Some(11)),
                    Ack(2, 11, 12, Err(Refused::InUse)),
                ],
            ),
            (
                "another client's lease is refused; renew extends",
                pool(10, 11),
                vec![
                    Offer(1, None, 0, Some(10)),
                    Ack(1, 10, 0, ok),
                    Ack(2, 10, 1, Err(Refused::InUse)),
                    Ack(1, 10, 50_000, ok),
                    Ack(2, 10, 120_000, Err(Refused::InUse)),
                    Ack(2, 10, 150_001, ok),
                ],
            ),
            (
                "out of range is not ours",
                pool(10, 11),
                vec![Ack(1, 50, 0, Err(Refused::NotInPool))],
            ),
            (
                "release frees; the MAC gets it back; others take it when fresh run out",
                pool(10, 11),
                vec![
                    Offer(1, None, 0, Some(10)),
                    Ack(1, 10, 0, ok),
                    Release(2, 10, 1, false),
                    Release(1, 10, 1, true),
                    Offer(1, None, 2, Some(10)),
                    Ack(1, 10, 2, ok),
                    Release(1, 10, 3, true),
                    Offer(2, None, 4, Some(11)),
                    Ack(2, 11, 4, ok),
                    Offer(3, None, 5, Some(10)),
                    Ack(3, 10, 5, ok),
                    Offer(1, None, 6, None),
                ],
            ),
            (
                "decline keeps the address out of use for the hold",
                pool(10, 11),
                vec![
                    Offer(1, None, 0, Some(10)),
                    Decline(2, 10, 1, false),
                    Decline(1, 10, 1, true),
                    Offer(1, None, 2, Some(11)),
                    Offer(2, Some(10), 2, None),
                    Ack(2, 10, 3, Err(Refused::InUse)),
                    Offer(2, Some(10), 51, Some(10)),
                ],
            ),
            (
                "expired leases are reused oldest first",
                pool(10, 12),
                vec![
                    Ack(1, 11, 0, ok),
                    Ack(2, 10, 10, ok),
                    Ack(3, 12, 20, ok),
                    Offer(4, None, 99_999, None),
                    Expire(100_015, 2),
                    Offer(4, None, 100_030, Some(11)),
                    Offer(5, None, 100_030, Some(10)),
                    Offer(6, None, 100_030, Some(12)),
                    Offer(7, None, 100_030, None),
                ],
            ),
        ];
        for (name, p, ops) in cases {
            run(name, p, &ops);
        }
    }

    #[test]
    fn reserved_addresses_are_never_handed_out() {
        let mut p = pool(10, 14);
        p.set_reserved([ip(10), ip(12), ip(200)]);
        assert_eq!(p.capacity(), 3);
        let got: Vec<_> = (1..=4).map(|m| p.offer(mac(m), None, 0)).collect();
        assert_eq!(got, vec![Some(ip(11)), Some(ip(13)), Some(ip(14)), None]);
        assert_eq!(p.offer(mac(9), Some(ip(12)), 0), None);
        assert_eq!(p.ack(mac(9), ip(12), 0), Err(Refused::NotInPool));
    }

    #[test]
    fn loaded_leases_come_back_to_their_mac() {
        let mut p = pool(10, 20);
        assert!(p.load(mac(1), ip(15), 1_000, 0));
        assert!(p.load(mac(2), ip(16), 5, 10)); // expired: remembered, free
        assert!(!p.load(mac(3), ip(99), 1_000, 0));
        assert_eq!(p.offer(mac(1), None, 1), Some(ip(15)));
        assert_eq!(p.offer(mac(2), None, 11), Some(ip(16)));
        assert_eq!(p.offer(mac(4), Some(ip(15)), 1), Some(ip(10)));
        assert_eq!(p.active_leases(1), 1);
    }

    #[test]
    fn moving_to_another_address_frees_the_old_one() {
        let mut p = pool(10, 11);
        p.ack(mac(1), ip(10), 0).unwrap();
        p.ack(mac(1), ip(11), 1).unwrap();
        assert_eq!(p.entry(ip(10)).unwrap().state, State::Free);
        assert_eq!(p.binding(&mac(1)).unwrap().0, ip(11));
        assert_eq!(p.offer(mac(2), None, 2), Some(ip(10)));
    }
}
