//! `power status` latency benchmark for `bench/ipmi-bench.sh`: this client
//! (one session reused, and a fresh session per call) against `ipmitool -I
//! lanplus` processes, sequential and in parallel.  Called from the ignored
//! test `power_ipmi::bench_power_status`, which starts an ipmi_sim.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{IpmiClient, IpmiError, IpmiTarget};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: IpmiTarget,
    /// Calls per scenario.
    pub calls: usize,
    /// Concurrency of the parallel scenarios.
    pub parallel: usize,
    /// `ipmitool` arguments before the command (e.g. `-I lanplus -C 3 -H .. -p .. -U .. -E`);
    /// the password goes in `IPMI_PASSWORD`.  `None` skips the ipmitool scenarios.
    pub ipmitool_args: Option<Vec<String>>,
}

/// Per-call latencies of one scenario.
#[derive(Debug, Clone)]
pub struct BenchStats {
    pub label: String,
    pub calls: usize,
    pub errors: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Wall time of the whole scenario.
    pub wall: Duration,
}

fn stats(label: &str, mut lat: Vec<Duration>, errors: usize, wall: Duration) -> BenchStats {
    lat.sort();
    let pick = |q: f64| -> Duration {
        if lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i]
    };
    BenchStats {
        label: label.to_owned(),
        calls: lat.len() + errors,
        errors,
        median: pick(0.5),
        p99: pick(0.99),
        max: lat.last().copied().unwrap_or_default(),
        wall,
    }
}

async fn status_reused(t: &IpmiTarget, calls: usize) -> Result<(Vec<Duration>, usize), IpmiError> {
    let mut c = IpmiClient::connect(t).await?;
    let mut lat = Vec::with_capacity(calls);
    let mut errors = 0;
    for _ in 0..calls {
        let s = Instant::now();
        match c.chassis_status().await {
            Ok(_) => lat.push(s.elapsed()),
            Err(_) => errors += 1,
        }
    }
    c.close().await?;
    Ok((lat, errors))
}

async fn status_fresh(t: &IpmiTarget, calls: usize) -> (Vec<Duration>, usize) {
    let mut lat = Vec::with_capacity(calls);
    let mut errors = 0;
    for _ in 0..calls {
        let s = Instant::now();
        let r = async {
            let mut c = IpmiClient::connect(t).await?;
            c.chassis_status().await?;
            c.close().await
        }
        .await;
        match r {
            Ok(()) => lat.push(s.elapsed()),
            Err(_) => errors += 1,
        }
    }
    (lat, errors)
}

fn ipmitool_calls(args: &[String], password: &str, calls: usize) -> (Vec<Duration>, usize) {
    let mut lat = Vec::with_capacity(calls);
    let mut errors = 0;
    for _ in 0..calls {
        let s = Instant::now();
        let ok = Command::new("ipmitool")
            .args(args)
            .args(["chassis", "power", "status"])
            .env("IPMI_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|st| st.success())
            .unwrap_or(false);
        if ok {
            lat.push(s.elapsed());
        } else {
            errors += 1;
        }
    }
    (lat, errors)
}

/// Split `calls` over `parallel` workers.
fn shares(calls: usize, parallel: usize) -> Vec<usize> {
    let p = parallel.max(1);
    (0..p)
        .map(|i| calls / p + usize::from(i < calls % p))
        .filter(|n| *n > 0)
        .collect()
}

/// Run all scenarios; each one's latencies are per `power status` call.
pub async fn run(cfg: &BenchConfig) -> Result<Vec<BenchStats>, IpmiError> {
    let mut out = Vec::new();
    let t = &cfg.target;
    let par = cfg.parallel.max(1);

    let w = Instant::now();
    let (lat, err) = status_reused(t, cfg.calls).await?;
    out.push(stats(
        "rackboot, one session reused, sequential",
        lat,
        err,
        w.elapsed(),
    ));

    // The same session cost without ipmi_sim's chassis_control program
    // (a shell script it runs for every power status): Get Device ID.
    let w = Instant::now();
    let mut c = IpmiClient::connect(t).await?;
    let (mut lat, mut err) = (Vec::with_capacity(cfg.calls), 0);
    for _ in 0..cfg.calls {
        let s = Instant::now();
        match c.raw(0x06, 0x01, &[]).await {
            Ok(_) => lat.push(s.elapsed()),
            Err(_) => err += 1,
        }
    }
    c.close().await?;
    out.push(stats(
        "(rackboot, one session reused, Get Device ID instead)",
        lat,
        err,
        w.elapsed(),
    ));

    let w = Instant::now();
    let (lat, err) = status_fresh(t, cfg.calls).await;
    out.push(stats(
        "rackboot, fresh session per call, sequential",
        lat,
        err,
        w.elapsed(),
    ));

    let w = Instant::now();
    let mut tasks = Vec::new();
    for n in shares(cfg.calls, par) {
        let t = t.clone();
        tasks.push(tokio::spawn(async move { status_reused(&t, n).await }));
    }
    let (mut lat, mut err) = (Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok(Ok((l, e))) => {
                lat.extend(l);
                err += e;
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(IpmiError::Protocol(format!("bench task: {e}"))),
        }
    }
    out.push(stats(
        &format!("rackboot, {par} sessions reused, {par} parallel"),
        lat,
        err,
        w.elapsed(),
    ));

    let w = Instant::now();
    let mut tasks = Vec::new();
    for n in shares(cfg.calls, par) {
        let t = t.clone();
        tasks.push(tokio::spawn(async move { status_fresh(&t, n).await }));
    }
    let (mut lat, mut err) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task
            .await
            .map_err(|e| IpmiError::Protocol(format!("bench task: {e}")))?;
        lat.extend(l);
        err += e;
    }
    out.push(stats(
        &format!("rackboot, fresh session per call, {par} parallel"),
        lat,
        err,
        w.elapsed(),
    ));

    if let Some(args) = &cfg.ipmitool_args {
        let pw = t.password.expose().to_owned();
        let w = Instant::now();
        let (lat, err) = ipmitool_calls(args, &pw, cfg.calls);
        out.push(stats(
            "ipmitool process per call, sequential",
            lat,
            err,
            w.elapsed(),
        ));

        let w = Instant::now();
        let handles: Vec<_> = shares(cfg.calls, par)
            .into_iter()
            .map(|n| {
                let (args, pw) = (args.clone(), pw.clone());
                std::thread::spawn(move || ipmitool_calls(&args, &pw, n))
            })
            .collect();
        let (mut lat, mut err) = (Vec::new(), 0);
        for h in handles {
            let (l, e) = h
                .join()
                .map_err(|_| IpmiError::Protocol("ipmitool bench thread panicked".into()))?;
            lat.extend(l);
            err += e;
        }
        out.push(stats(
            &format!("ipmitool process per call, {par} parallel"),
            lat,
            err,
            w.elapsed(),
        ));
    }
    Ok(out)
}

/// A plain-text table of the results.
pub fn report(stats: &[BenchStats]) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mut s = format!(
        "{:<50} {:>6} {:>6} {:>11} {:>9} {:>9} {:>9}\n",
        "scenario (per power-status call)",
        "calls",
        "errors",
        "median ms",
        "p99 ms",
        "max ms",
        "wall s"
    );
    for b in stats {
        s.push_str(&format!(
            "{:<50} {:>6} {:>6} {:>11} {:>9} {:>9} {:>9.2}\n",
            b.label,
            b.calls,
            b.errors,
            ms(b.median),
            ms(b.p99),
            ms(b.max),
            b.wall.as_secs_f64()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_shares() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = stats("x", lat, 0, Duration::ZERO);
        assert_eq!(s.median, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(shares(100, 8), vec![13, 13, 13, 13, 12, 12, 12, 12]);
        assert_eq!(shares(3, 8), vec![1, 1, 1]);
        assert!(stats("e", vec![], 2, Duration::ZERO).median.is_zero());
    }
}
