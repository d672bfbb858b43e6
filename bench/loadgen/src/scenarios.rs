//! The four scenarios. Every loop is bounded by a deadline.

use std::io;
use std::time::{Duration, Instant};

use crate::conn::{parse_url, Failures, Pattern, Pool, State, Target};
use crate::frame::{self, Event};
use crate::json::Obj;
use crate::{known, Args};

pub(crate) type Outcome = Result<(String, bool), String>;

pub(crate) fn secs(d: f64) -> Duration {
    Duration::from_secs_f64(d.max(0.0))
}

pub(crate) fn target(args: &Args) -> Result<Target, String> {
    parse_url(args.str("url").ok_or("--url is required")?)
}

pub(crate) fn new_pool() -> Result<Pool, String> {
    Pool::new().map_err(|e| format!("cannot create poller: {e}"))
}

/// Waits for readiness (bounded by `timeout`) and returns the ready tokens.
pub(crate) fn poll_ready(pool: &mut Pool, timeout: Duration, ready: &mut Vec<usize>) {
    ready.clear();
    match pool.poll.poll(&mut pool.events, Some(timeout)) {
        Ok(()) => ready.extend(pool.events.iter().map(|e| e.token().0)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => {
            pool.fail.note(format!("poll: {e}"));
            // Avoid spinning if the poller itself is broken.
            std::thread::sleep(timeout.min(Duration::from_millis(10)));
        }
    }
}

pub(crate) fn failures_json(f: &Failures) -> Obj {
    let mut o = Obj::new();
    o.int("connect", f.connect)
        .int("handshake", f.handshake)
        .int("timeout", f.timeout)
        .int("dropped", f.dropped)
        .opt_str("first_error", f.first_error.as_deref());
    o
}

struct EchoRun {
    received_total: u64,
    measured: u64,
    measured_secs: f64,
    bad_echo: u64,
}

/// Pipelined echo: every connection keeps `window` copies of the pattern's
/// frame in flight and sends one more per echo received; replacements go out
/// once `refill` of them are owed (1 = immediately), so a server that answers
/// frame by frame does not cost one write syscall per echo here.
#[allow(clippy::too_many_arguments)]
fn run_echo(
    pool: &mut Pool,
    pat: &Pattern,
    window: usize,
    refill: usize,
    expect: (u8, u64),
    warmup: Duration,
    measure: Duration,
    label: &str,
) -> EchoRun {
    for i in 0..pool.conns.len() {
        if pool.conns[i].state == State::Open {
            pool.conns[i].out.queue_frames(pat, window);
            pool.flush(i, Some(pat));
        }
    }
    let start = Instant::now();
    let warm_end = start + warmup;
    let end = warm_end + measure;
    let mut received = 0u64;
    let mut bad_echo = 0u64;
    let mut snapshot: Option<(u64, Instant)> = None;
    let mut ready = Vec::with_capacity(4096);
    let mut last_report = (start, 0u64);
    let seen_dropped = pool.fail.dropped;
    loop {
        let now = Instant::now();
        if snapshot.is_none() && now >= warm_end {
            snapshot = Some((received, now));
        }
        if now >= end {
            break;
        }
        if now.duration_since(last_report.0) >= Duration::from_secs(1) {
            let dt = now.duration_since(last_report.0).as_secs_f64();
            eprintln!(
                "{label}: {:.0} msg/s ({} open)",
                (received - last_report.1) as f64 / dt,
                pool.open_count()
            );
            last_report = (now, received);
        }
        let next_mark = if snapshot.is_none() { warm_end } else { end };
        let timeout = next_mark.saturating_duration_since(now).min(Duration::from_millis(100));
        poll_ready(pool, timeout, &mut ready);
        for &idx in &ready {
            pool.read(idx, |out, ev| {
                if let Event::Message { opcode, len, .. } = ev {
                    received += 1;
                    // The echo must keep both the size and the message type.
                    if (opcode, len) != expect {
                        bad_echo += 1;
                    }
                    out.queue_frames(pat, 1);
                }
            });
            if pool.conns[idx].out.wants_flush(pat, refill) {
                pool.flush(idx, Some(pat));
            }
        }
        // Rescan only after a loss: this loop runs tens of thousands of times a second.
        if pool.fail.dropped != seen_dropped && pool.open_count() == 0 {
            pool.fail.note("every connection was lost".to_string());
            break;
        }
    }
    let stop = Instant::now();
    let (base, t) = snapshot.unwrap_or((received, stop));
    EchoRun {
        received_total: received,
        measured: received - base,
        measured_secs: stop.duration_since(t).as_secs_f64(),
        bad_echo,
    }
}

fn connect_phase(
    args: &Args,
    t: &Target,
    default_conns: usize,
    default_timeout: f64,
    label: &str,
) -> Result<(Pool, usize, f64), String> {
    let conns: usize = args.num("conns", default_conns)?;
    let timeout: f64 = args.num("timeout", default_timeout)?;
    let batch: usize = args.num("batch", 100)?;
    if conns == 0 {
        return Err("--conns must be at least 1".to_string());
    }
    let mut pool = new_pool()?;
    let t0 = Instant::now();
    pool.connect(t, conns, batch, t0 + secs(timeout), label);
    Ok((pool, conns, t0.elapsed().as_secs_f64()))
}

pub fn echo(args: &Args) -> Outcome {
    known(args, &["size", "window", "refill", "secs", "warmup"])?;
    let t = target(args)?;
    let size: usize = args.num("size", 20)?;
    let window: usize = args.num("window", 64)?.max(1);
    // Never above the window: with everything owed a flush must still happen.
    let refill: usize = args.num("refill", 1)?.clamp(1, window);
    let measure: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let (mut pool, conns, connect_secs) = connect_phase(args, &t, 100, 30.0, "echo")?;
    let open = pool.open_count();
    eprintln!("echo: {open}/{conns} connected in {connect_secs:.2}s");
    // Text frames, as a chat-like workload would send; ASCII keeps them valid UTF-8.
    let payload = vec![b'x'; size];
    let pat = Pattern::new(&frame::frame(frame::OP_TEXT, &payload), window);
    let r = if open > 0 {
        run_echo(
            &mut pool,
            &pat,
            window,
            refill,
            (frame::OP_TEXT, size as u64),
            secs(warmup),
            secs(measure),
            "echo",
        )
    } else {
        EchoRun {
            received_total: 0,
            measured: 0,
            measured_secs: 0.0,
            bad_echo: 0,
        }
    };
    let rate = if r.measured_secs > 0.0 {
        r.measured as f64 / r.measured_secs
    } else {
        0.0
    };
    pool.close_all(Some(&pat), Duration::from_secs(2));
    let mut o = Obj::new();
    o.str("scenario", "echo")
        .int("conns", conns as u64)
        .int("connected", open as u64)
        .int("size", size as u64)
        .int("window", window as u64)
        .int("refill", refill as u64)
        .num("warmup_secs", warmup)
        .num("measured_secs", r.measured_secs)
        .int("echoes", r.measured)
        .int("echoes_total", r.received_total)
        .num("msgs_per_sec", rate)
        .num("payload_mb_per_sec", rate * size as f64 / 1e6)
        .int("bad_echo", r.bad_echo)
        .obj("failures", &failures_json(&pool.fail));
    Ok((o.finish(), open > 0 && r.measured > 0))
}

pub fn large(args: &Args) -> Outcome {
    known(args, &["size", "window", "refill", "secs", "warmup"])?;
    let t = target(args)?;
    let size: usize = args.num("size", 1 << 20)?;
    let window: usize = args.num("window", 1)?.max(1);
    // Never above the window: with everything owed a flush must still happen.
    let refill: usize = args.num("refill", 1)?.clamp(1, window);
    let measure: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let (mut pool, conns, _) = connect_phase(args, &t, 1, 30.0, "large")?;
    let open = pool.open_count();
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
    let pat = Pattern::new(&frame::frame(frame::OP_BINARY, &payload), window);
    let r = if open > 0 {
        run_echo(
            &mut pool,
            &pat,
            window,
            refill,
            (frame::OP_BINARY, size as u64),
            secs(warmup),
            secs(measure),
            "large",
        )
    } else {
        EchoRun {
            received_total: 0,
            measured: 0,
            measured_secs: 0.0,
            bad_echo: 0,
        }
    };
    let per_sec = if r.measured_secs > 0.0 {
        r.measured as f64 / r.measured_secs
    } else {
        0.0
    };
    pool.close_all(Some(&pat), Duration::from_secs(2));
    let mut o = Obj::new();
    o.str("scenario", "large")
        .int("conns", conns as u64)
        .int("connected", open as u64)
        .int("size", size as u64)
        .int("window", window as u64)
        .int("refill", refill as u64)
        .num("measured_secs", r.measured_secs)
        .int("round_trips", r.measured)
        .num("round_trips_per_sec", per_sec)
        // Payload bytes the server echoed back per second (one direction);
        // the same amount went the other way, see total_mb_per_sec.
        .num("echo_mb_per_sec", per_sec * size as f64 / 1e6)
        .num("total_mb_per_sec", 2.0 * per_sec * size as f64 / 1e6)
        .int("bad_echo", r.bad_echo)
        .obj("failures", &failures_json(&pool.fail));
    Ok((o.finish(), open > 0 && r.measured > 0))
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

pub fn latency(args: &Args) -> Outcome {
    known(args, &["rate", "size", "secs", "warmup"])?;
    let t = target(args)?;
    let rate: f64 = args.num("rate", 5000.0)?;
    let size: usize = args.num::<usize>("size", 32)?.max(8);
    let measure: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err("--rate must be positive".to_string());
    }
    let (mut pool, conns, _) = connect_phase(args, &t, 100, 30.0, "latency")?;
    let open = pool.open_count();
    eprintln!("latency: {open}/{conns} connected, offering {rate} msg/s");

    let origin = Instant::now();
    let start = origin;
    let warm_end_ns = secs(warmup).as_nanos() as u64;
    let send_end = start + secs(warmup + measure);
    let mut samples: Vec<u64> = Vec::with_capacity((rate * measure) as usize + 16);
    let mut sent = 0u64;
    let mut sent_measured = 0u64;
    let mut received = 0u64;
    let mut bad = 0u64;
    let mut rr = 0usize;
    let mut payload = vec![b'l'; size];
    let mut buf = Vec::with_capacity(size + 14);
    let mut touched: Vec<usize> = Vec::new();
    let mut ready = Vec::with_capacity(4096);
    let n = pool.conns.len();
    let mut last_report = start;

    let mut on_reads = |pool: &mut Pool, ready: &[usize], samples: &mut Vec<u64>| {
        for &idx in ready {
            let now_ns = origin.elapsed().as_nanos() as u64;
            pool.read(idx, |_, ev| {
                if let Event::Message { opcode, prefix, .. } = ev {
                    received += 1;
                    if opcode != frame::OP_BINARY {
                        bad += 1;
                        return;
                    }
                    let Some(ts) = prefix.get(..8).and_then(|b| b.try_into().ok()) else {
                        bad += 1;
                        return;
                    };
                    let ts = u64::from_le_bytes(ts);
                    if ts > now_ns {
                        bad += 1;
                    } else if ts >= warm_end_ns {
                        samples.push(now_ns - ts);
                    }
                }
            });
            pool.flush(idx, None);
        }
    };

    loop {
        let now = Instant::now();
        if open == 0 || now >= send_end {
            break;
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            last_report = now;
            eprintln!("latency: sent {sent}, {} samples", samples.len());
        }
        let due = (now.duration_since(start).as_secs_f64() * rate) as u64;
        let ts = now.duration_since(origin).as_nanos() as u64;
        touched.clear();
        while sent < due {
            // Round-robin over live connections; give up if none is left.
            let mut tries = 0;
            while pool.conns[rr % n].state != State::Open && tries < n {
                rr += 1;
                tries += 1;
            }
            if tries == n {
                break;
            }
            let idx = rr % n;
            rr += 1;
            payload[..8].copy_from_slice(&ts.to_le_bytes());
            buf.clear();
            frame::push_frame(&mut buf, frame::OP_BINARY, &payload);
            pool.conns[idx].out.push(&buf);
            touched.push(idx);
            sent += 1;
            if ts >= warm_end_ns {
                sent_measured += 1;
            }
        }
        for &idx in &touched {
            pool.flush(idx, None);
        }
        if pool.open_count() == 0 {
            pool.fail.note("every connection was lost".to_string());
            break;
        }
        let next_due = start + Duration::from_secs_f64((sent + 1) as f64 / rate);
        let timeout = next_due
            .min(send_end)
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        poll_ready(&mut pool, timeout, &mut ready);
        on_reads(&mut pool, &ready, &mut samples);
    }
    // Rates are over the time actually spent sending after warm-up, which is
    // shorter than --secs if every connection was lost.
    let sent_secs = Instant::now()
        .min(send_end)
        .saturating_duration_since(start + secs(warmup))
        .as_secs_f64();
    // Collect the tail, bounded: whatever has not come back in 2 s is lost.
    let drain_end = Instant::now() + Duration::from_secs(2);
    while (samples.len() as u64) < sent_measured && Instant::now() < drain_end {
        if pool.open_count() == 0 {
            break;
        }
        let timeout = drain_end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        poll_ready(&mut pool, timeout, &mut ready);
        on_reads(&mut pool, &ready, &mut samples);
    }
    pool.close_all(None, Duration::from_secs(2));
    samples.sort_unstable();
    let mean = if samples.is_empty() {
        f64::NAN
    } else {
        samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64 / 1000.0
    };
    let measure_secs = sent_secs.max(1e-9);
    let mut o = Obj::new();
    o.str("scenario", "latency")
        .int("conns", conns as u64)
        .int("connected", open as u64)
        .int("size", size as u64)
        .num("offered_rate", rate)
        .num("measured_secs", sent_secs)
        .int("sent", sent_measured)
        .int("received", samples.len() as u64)
        .int("lost", sent_measured.saturating_sub(samples.len() as u64))
        .num("sent_rate", sent_measured as f64 / measure_secs)
        .num("achieved_rate", samples.len() as f64 / measure_secs)
        .num("p50_us", percentile(&samples, 50.0))
        .num("p90_us", percentile(&samples, 90.0))
        .num("p99_us", percentile(&samples, 99.0))
        .num("p999_us", percentile(&samples, 99.9))
        .num("max_us", percentile(&samples, 100.0))
        .num("mean_us", mean)
        .int("echoes_total", received)
        .int("bad_echo", bad)
        .obj("failures", &failures_json(&pool.fail));
    Ok((o.finish(), open > 0 && !samples.is_empty()))
}

fn rss_kb(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in {path}"))
}

/// Keeps the connections serviced (pings answered, losses counted) for `d`.
fn service(pool: &mut Pool, d: Duration, ready: &mut Vec<usize>) {
    let end = Instant::now() + d;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        poll_ready(pool, left.min(Duration::from_millis(100)), ready);
        for &idx in ready.iter() {
            pool.read(idx, |_, _| {});
            pool.flush(idx, None);
        }
    }
}

pub fn idle(args: &Args) -> Outcome {
    known(args, &["pid", "hold", "settle"])?;
    let t = target(args)?;
    let pid: u32 = args
        .str("pid")
        .ok_or("--pid (the server's process id) is required")?
        .parse()
        .map_err(|_| "--pid must be a number".to_string())?;
    let hold: f64 = args.num("hold", 2.0)?;
    let settle_max: f64 = args.num("settle", 10.0)?;
    let before = rss_kb(pid)?;
    let (mut pool, conns, connect_secs) = connect_phase(args, &t, 10_000, 120.0, "idle")?;
    let open = pool.open_count();
    eprintln!("idle: {open}/{conns} connected in {connect_secs:.1}s");

    // RSS lags the handshakes (buffers are touched lazily): wait until it
    // stops moving, bounded by --settle seconds.
    let mut ready = Vec::with_capacity(4096);
    let settle_end = Instant::now() + secs(settle_max);
    let mut prev = rss_kb(pid)?;
    let mut stable = 0;
    while stable < 4 && Instant::now() < settle_end {
        service(&mut pool, Duration::from_millis(250), &mut ready);
        let cur = rss_kb(pid)?;
        let tol = (prev / 200).max(64);
        if cur.abs_diff(prev) <= tol {
            stable += 1;
        } else {
            stable = 0;
        }
        prev = cur;
    }
    let settled = stable >= 4;
    service(&mut pool, secs(hold), &mut ready);
    let after = rss_kb(pid)?;
    let held = pool.open_count();
    let per_conn = if held > 0 {
        (after.saturating_sub(before) as f64 * 1024.0) / held as f64
    } else {
        f64::NAN
    };
    eprintln!("idle: rss {before} kB -> {after} kB with {held} connections");
    let fail = failures_json(&pool.fail);
    pool.close_all(None, Duration::from_secs(2));
    drop(pool);
    std::thread::sleep(Duration::from_secs(1));
    let after_close = rss_kb(pid).ok();
    let mut o = Obj::new();
    o.str("scenario", "idle")
        .int("conns", conns as u64)
        .int("connected", open as u64)
        .int("held", held as u64)
        .num("connect_secs", connect_secs)
        .num("handshakes_per_sec", open as f64 / connect_secs.max(1e-9))
        .int("rss_before_kb", before)
        .int("rss_after_kb", after)
        .boolean("rss_settled", settled)
        .num("bytes_per_conn", per_conn)
        .obj("failures", &fail);
    if let Some(k) = after_close {
        o.int("rss_after_close_kb", k);
    }
    Ok((o.finish(), held > 0))
}
