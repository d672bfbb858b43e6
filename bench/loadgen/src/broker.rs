//! Broker scenarios over the Achex dialect (PROTOCOLS.md §2): `fanout` (one
//! publisher, one group of subscribers) and `direct` (pairs exchanging `to`
//! messages). Every message carries its send time as `"t":<ns>` on this
//! process's clock, so latency is receive time minus `t`. Every loop is
//! bounded by a deadline.

use std::time::{Duration, Instant};

use crate::conn::{Pool, State};
use crate::frame::{self, Event};
use crate::json::Obj;
use crate::scenarios::{failures_json, new_pool, percentile, poll_ready, secs, target, Outcome};
use crate::{known, Args};

/// Every login uses this password; the servers run in open mode.
const PASSWD: &str = "x";
/// Latency samples kept at most (8 bytes each), so a long saturated run
/// cannot eat the machine's memory.
const MAX_SAMPLES: usize = 50_000_000;

/// What a server message is, judged from its first bytes (the parser keeps
/// `frame::PREFIX_LEN` of them).
#[derive(Debug, PartialEq, Eq)]
enum Msg {
    Sid,
    AuthOk,
    AuthFailed,
    Error,
    /// The self-addressed marker a session sends after registering.
    Ready,
    /// A benchmark message; `None` if its `t` could not be read.
    Data(Option<u64>),
    Other,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn classify(p: &[u8]) -> Msg {
    if p.starts_with(b"{\"SID\":") {
        Msg::Sid
    } else if p.starts_with(b"{\"auth\":\"ok\"}") {
        Msg::AuthOk
    } else if p.starts_with(b"{\"auth\":") {
        Msg::AuthFailed
    } else if p.starts_with(b"{\"error\":") {
        Msg::Error
    } else if find(p, b"\"ready\":1").is_some() {
        Msg::Ready
    } else if p.starts_with(b"{\"bc\":") || p.starts_with(b"{\"to\":") {
        Msg::Data(find(p, b"\"t\":").and_then(|i| parse_u64(&p[i + 4..])))
    } else {
        Msg::Other
    }
}

/// Leading decimal digits as a number; None if there are none, if they run
/// to the end of the prefix (possibly cut short) or overflow.
fn parse_u64(b: &[u8]) -> Option<u64> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits == b.len() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &b[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// A masked text frame holding `{<head>"t":<t>,"p":"xx…"}` padded to `size`
/// bytes of JSON (or unpadded, `"p":""`, if the rest already exceeds it).
fn push_msg(buf: &mut Vec<u8>, head: &str, t: u64, size: usize, scratch: &mut String) {
    use std::fmt::Write;
    scratch.clear();
    let _ = write!(scratch, "{{{head}\"t\":{t},\"p\":\"");
    let pad = size.saturating_sub(scratch.len() + 2);
    scratch.extend(std::iter::repeat_n('x', pad));
    scratch.push_str("\"}");
    frame::push_frame(buf, frame::OP_TEXT, scratch.as_bytes());
}

fn text_frame(s: &str) -> Vec<u8> {
    frame::frame(frame::OP_TEXT, s.as_bytes())
}

/// Counts of everything that went wrong at the Achex level (the Pool counts
/// transport failures).
#[derive(Default)]
struct Trouble {
    login_failed: u64,
    not_ready: u64,
    errors: u64,
    bad: u64,
    first: Option<String>,
}

impl Trouble {
    fn note(&mut self, s: String) {
        if self.first.is_none() {
            self.first = Some(s);
        }
    }

    fn json(&self) -> Obj {
        let mut o = Obj::new();
        o.int("login_failed", self.login_failed)
            .int("not_ready", self.not_ready)
            .int("error_replies", self.errors)
            .int("unparsable", self.bad)
            .opt_str("first", self.first.as_deref());
        o
    }
}

/// Logs every open connection in as `names[i]`, then sends it `after(i)`;
/// a session counts as ready once it has `{"auth":"ok"}` and, where
/// `want_ready[i]`, its own `{"to":<self>,"ready":1}` back (so commands sent
/// before it, e.g. register_broadcast, have been applied). Bounded by `deadline`.
fn achex_setup(
    pool: &mut Pool,
    names: &[String],
    want_ready: &[bool],
    after: &dyn Fn(usize) -> Vec<u8>,
    deadline: Instant,
    trouble: &mut Trouble,
    label: &str,
) -> Vec<bool> {
    let n = pool.conns.len();
    let mut authed = vec![false; n];
    let mut readied = vec![false; n];
    let mut done = vec![false; n];
    let mut pending = 0usize;
    for (i, name) in names.iter().enumerate().take(n) {
        if pool.conns[i].state != State::Open {
            continue;
        }
        let login = format!("{{\"setID\":\"{name}\",\"passwd\":\"{PASSWD}\"}}");
        let mut bytes = text_frame(&login);
        bytes.extend_from_slice(&after(i));
        pool.conns[i].out.push(&bytes);
        pool.flush(i, None);
        pending += 1;
    }
    let mut ready = Vec::with_capacity(4096);
    let mut last_report = Instant::now();
    // Each connection's early bytes (the SID, often) wait in its parser's
    // input until its first read; reading every one once picks them up.
    let mut idxs: Vec<usize> = (0..n).collect();
    while pending > 0 {
        for &idx in &idxs {
            if done[idx] || pool.conns[idx].state != State::Open {
                continue;
            }
            let (mut a, mut r) = (authed[idx], readied[idx]);
            let mut fail: Option<String> = None;
            let mut errs = 0u64;
            pool.read(idx, |_, ev| {
                if let Event::Message { prefix, .. } = ev {
                    match classify(prefix) {
                        Msg::AuthOk => a = true,
                        Msg::AuthFailed => fail = Some(String::from_utf8_lossy(prefix).into_owned()),
                        Msg::Error => {
                            errs += 1;
                            fail.get_or_insert_with(|| String::from_utf8_lossy(prefix).into_owned());
                        }
                        Msg::Ready => r = true,
                        Msg::Sid | Msg::Data(_) | Msg::Other => {}
                    }
                }
            });
            pool.flush(idx, None);
            authed[idx] = a;
            readied[idx] = r;
            trouble.errors += errs;
            let lost = pool.conns[idx].state != State::Open;
            if let Some(f) = &fail {
                if !a {
                    trouble.login_failed += 1;
                }
                trouble.note(format!("{}: {f}", names[idx]));
            }
            if (a && (r || !want_ready[idx])) || fail.is_some() || lost {
                done[idx] = true;
                pending -= 1;
            }
        }
        let now = Instant::now();
        if pending == 0 || now >= deadline {
            break;
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            last_report = now;
            eprintln!("{label}: {pending} sessions still logging in");
        }
        poll_ready(
            pool,
            deadline.saturating_duration_since(now).min(Duration::from_millis(100)),
            &mut ready,
        );
        idxs.clear();
        idxs.extend_from_slice(&ready);
    }
    let ok: Vec<bool> = (0..n)
        .map(|i| pool.conns[i].state == State::Open && authed[i] && (readied[i] || !want_ready[i]))
        .collect();
    let missing = (0..n)
        .filter(|&i| pool.conns[i].state == State::Open && !ok[i] && authed[i])
        .count() as u64;
    let never_authed = (0..n)
        .filter(|&i| pool.conns[i].state == State::Open && !authed[i] && !done[i])
        .count() as u64;
    trouble.not_ready += missing;
    trouble.login_failed += never_authed;
    if missing + never_authed > 0 {
        trouble.note(format!("{} sessions not ready by the deadline", missing + never_authed));
    }
    ok
}

fn connect_all(args: &Args, n: usize, label: &str) -> Result<(Pool, f64), String> {
    let t = target(args)?;
    let timeout: f64 = args.num("timeout", 60.0)?;
    let batch: usize = args.num("batch", 100)?;
    let mut pool = new_pool()?;
    // A thousand sockets each waking for one small message: the second,
    // empty read per wake-up would be most of this process's syscalls.
    pool.short_read_drains = true;
    let t0 = Instant::now();
    pool.connect(&t, n, batch, t0 + secs(timeout), label);
    let took = t0.elapsed().as_secs_f64();
    eprintln!("{label}: {}/{n} connected in {took:.2}s", pool.open_count());
    Ok((pool, took))
}

struct Lat {
    samples: Vec<u64>,
}

impl Lat {
    fn push(&mut self, v: u64) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(v);
        }
    }

    fn fill(mut self, o: &mut Obj) {
        self.samples.sort_unstable();
        let s = &self.samples;
        let mean = if s.is_empty() {
            f64::NAN
        } else {
            s.iter().map(|&v| v as f64).sum::<f64>() / s.len() as f64 / 1000.0
        };
        o.int("samples", s.len() as u64)
            .num("p50_us", percentile(s, 50.0))
            .num("p90_us", percentile(s, 90.0))
            .num("p99_us", percentile(s, 99.0))
            .num("p999_us", percentile(s, 99.9))
            .num("max_us", percentile(s, 100.0))
            .num("mean_us", mean);
    }
}

/// One publisher sends `{"bc":"g","t":…,"p":…}` to a group every subscriber
/// joined. `--rate R` offers R messages/s; `--rate 0` saturates: the
/// publisher keeps `--window` messages ahead of the average subscriber.
pub fn fanout(args: &Args) -> Outcome {
    known(args, &["subs", "size", "rate", "window", "secs", "warmup", "drain"])?;
    let subs: usize = args.num("subs", 1000)?;
    let size: usize = args.num("size", 64)?;
    let rate: f64 = args.num("rate", 100.0)?;
    let window: u64 = args.num::<u64>("window", 8)?.max(1);
    let measure: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let drain: f64 = args.num("drain", 2.0)?;
    if subs == 0 {
        return Err("--subs must be at least 1".to_string());
    }
    if !(rate >= 0.0 && rate.is_finite()) {
        return Err("--rate must be 0 (saturate) or positive".to_string());
    }
    let saturate = rate == 0.0;
    // The last connection is the publisher; it does not join the group. If a
    // connect failed there are fewer sockets than asked for (counted in failures).
    let (mut pool, _) = connect_all(args, subs + 1, "fanout")?;
    let Some(pubi) = pool.conns.len().checked_sub(1) else {
        return Err(format!("no connection could be opened: {:?}", pool.fail.first_error));
    };
    let names: Vec<String> = (0..pubi).map(|i| format!("s{i}")).chain(["pub".to_string()]).collect();
    let mut want_ready = vec![true; pubi];
    want_ready.push(false);
    let after = |i: usize| -> Vec<u8> {
        if i == pubi {
            return Vec::new();
        }
        let mut b = text_frame("{\"cmd\":\"register_broadcast\",\"bid\":\"g\"}");
        b.extend(text_frame(&format!("{{\"to\":\"{}\",\"ready\":1}}", names[i])));
        b
    };
    let mut trouble = Trouble::default();
    let setup_timeout: f64 = args.num("timeout", 60.0)?;
    let ok = achex_setup(
        &mut pool,
        &names,
        &want_ready,
        &after,
        Instant::now() + secs(setup_timeout),
        &mut trouble,
        "fanout",
    );
    let ready_subs = ok[..pubi].iter().filter(|&&b| b).count() as u64;
    let pub_ok = ok[pubi];
    eprintln!(
        "fanout: {ready_subs}/{subs} subscribers ready, publisher {}",
        if pub_ok { "ready" } else { "NOT ready" }
    );

    let origin = Instant::now();
    let warm_ns = secs(warmup).as_nanos() as u64;
    let end_ns = secs(warmup + measure).as_nanos() as u64;
    let send_end = origin + secs(warmup + measure);
    let mut sent = 0u64;
    let mut sent_measured = 0u64;
    let mut delivered = 0u64; // every delivery, any time
    let mut delivered_window = 0u64; // received inside the measured window
    let mut delivered_measured = 0u64; // of messages sent inside the window
    let mut lat = Lat { samples: Vec::new() };
    let mut buf = Vec::with_capacity(4096);
    let mut scratch = String::new();
    let mut ready = Vec::with_capacity(4096);
    let mut last_report = (origin, 0u64);
    let seen_dropped = pool.fail.dropped;
    let head = "\"bc\":\"g\",";

    let on_reads = |pool: &mut Pool,
                    ready: &[usize],
                    lat: &mut Lat,
                    delivered: &mut u64,
                    delivered_window: &mut u64,
                    delivered_measured: &mut u64,
                    trouble: &mut Trouble| {
        for &idx in ready {
            let now_ns = origin.elapsed().as_nanos() as u64;
            let in_window = now_ns >= warm_ns && now_ns < end_ns;
            pool.read(idx, |_, ev| {
                if let Event::Message { prefix, .. } = ev {
                    match classify(prefix) {
                        Msg::Data(Some(t)) if t <= now_ns => {
                            *delivered += 1;
                            if in_window {
                                *delivered_window += 1;
                            }
                            if t >= warm_ns && t < end_ns {
                                *delivered_measured += 1;
                                lat.push(now_ns - t);
                            }
                        }
                        Msg::Data(_) | Msg::Other => trouble.bad += 1,
                        Msg::Error | Msg::AuthFailed => {
                            trouble.errors += 1;
                            trouble.note(String::from_utf8_lossy(prefix).into_owned());
                        }
                        Msg::Sid | Msg::AuthOk | Msg::Ready => {}
                    }
                }
            });
            pool.flush(idx, None);
        }
    };

    let active = ready_subs > 0 && pub_ok;
    loop {
        let now = Instant::now();
        if !active || now >= send_end {
            break;
        }
        if now.duration_since(last_report.0) >= Duration::from_secs(1) {
            let dt = now.duration_since(last_report.0).as_secs_f64();
            eprintln!(
                "fanout: sent {sent}, {:.0} deliveries/s",
                (delivered - last_report.1) as f64 / dt
            );
            last_report = (now, delivered);
        }
        let due = if saturate {
            // Ahead of the average subscriber by at most `window` messages.
            let behind = sent.saturating_sub(delivered / ready_subs);
            sent + window.saturating_sub(behind)
        } else {
            (now.duration_since(origin).as_secs_f64() * rate) as u64
        };
        if due > sent {
            let ts = origin.elapsed().as_nanos() as u64;
            buf.clear();
            while sent < due {
                push_msg(&mut buf, head, ts, size, &mut scratch);
                sent += 1;
                if ts >= warm_ns && ts < end_ns {
                    sent_measured += 1;
                }
            }
            pool.conns[pubi].out.push(&buf);
            pool.flush(pubi, None);
            if pool.conns[pubi].state != State::Open {
                pool.fail.note("the publisher's connection was lost".to_string());
                break;
            }
        }
        let timeout = if saturate {
            Duration::from_millis(100)
        } else {
            (origin + Duration::from_secs_f64((sent + 1) as f64 / rate))
                .min(send_end)
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100))
        };
        poll_ready(&mut pool, timeout, &mut ready);
        on_reads(
            &mut pool,
            &ready,
            &mut lat,
            &mut delivered,
            &mut delivered_window,
            &mut delivered_measured,
            &mut trouble,
        );
        if pool.fail.dropped != seen_dropped && pool.open_count() == 0 {
            pool.fail.note("every connection was lost".to_string());
            break;
        }
    }
    let measured_secs = Instant::now()
        .min(send_end)
        .saturating_duration_since(origin + secs(warmup))
        .as_secs_f64();
    // Whatever was sent in the window and has not arrived after the drain is lost.
    let expected = sent_measured * ready_subs;
    let drain_end = Instant::now() + secs(drain);
    while active && delivered_measured < expected && Instant::now() < drain_end && pool.open_count() > 0 {
        let timeout = drain_end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        poll_ready(&mut pool, timeout, &mut ready);
        on_reads(
            &mut pool,
            &ready,
            &mut lat,
            &mut delivered,
            &mut delivered_window,
            &mut delivered_measured,
            &mut trouble,
        );
    }
    pool.close_all(None, Duration::from_secs(2));
    let per_sec = delivered_window as f64 / measured_secs.max(1e-9);
    let mut o = Obj::new();
    o.str("scenario", "fanout")
        .str("mode", if saturate { "saturate" } else { "rate" })
        .int("subs", subs as u64)
        .int("ready_subs", ready_subs)
        .int("size", size as u64)
        .num("offered_rate", rate)
        .int("window", if saturate { window } else { 0 })
        .num("warmup_secs", warmup)
        .num("measured_secs", measured_secs)
        .int("sent", sent_measured)
        .num("sent_per_sec", sent_measured as f64 / measured_secs.max(1e-9))
        .int("deliveries", delivered_window)
        .num("deliveries_per_sec", per_sec)
        .int("expected", expected)
        .int("received", delivered_measured)
        .int("lost", expected.saturating_sub(delivered_measured))
        .int("deliveries_total", delivered);
    lat.fill(&mut o);
    o.obj("achex", &trouble.json())
        .obj("failures", &failures_json(&pool.fail));
    Ok((o.finish(), active && delivered_window > 0))
}

/// `--pairs` pairs of sessions, s(2i) and s(2i+1); each side answers every
/// message it receives with a new `{"to":<peer>,"t":…}`, so each pair keeps
/// `--window` messages in flight (s(2i) starts them).
pub fn direct(args: &Args) -> Outcome {
    known(args, &["pairs", "size", "window", "secs", "warmup", "drain"])?;
    let pairs: usize = args.num("pairs", 500)?;
    let size: usize = args.num("size", 64)?;
    let window: usize = args.num::<usize>("window", 1)?.max(1);
    let measure: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let drain: f64 = args.num("drain", 2.0)?;
    if pairs == 0 {
        return Err("--pairs must be at least 1".to_string());
    }
    let (mut pool, _) = connect_all(args, pairs * 2, "direct")?;
    // Fewer sockets than asked for if a connect failed (counted in failures).
    let n = pool.conns.len();
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let mut trouble = Trouble::default();
    let setup_timeout: f64 = args.num("timeout", 60.0)?;
    let ok = achex_setup(
        &mut pool,
        &names,
        &vec![false; n],
        &|_| Vec::new(),
        Instant::now() + secs(setup_timeout),
        &mut trouble,
        "direct",
    );
    // A pair runs only if both of its sessions are logged in.
    let live: Vec<bool> = (0..n).map(|i| ok[i] && ok.get(i ^ 1) == Some(&true)).collect();
    let live_pairs = live.iter().filter(|&&b| b).count() / 2;
    eprintln!("direct: {live_pairs}/{pairs} pairs ready");
    // Each side's message header, pre-rendered: `"to":"<peer>",`.
    let heads: Vec<String> = (0..n).map(|i| format!("\"to\":\"s{}\",", i ^ 1)).collect();

    let origin = Instant::now();
    let warm_ns = secs(warmup).as_nanos() as u64;
    let end_ns = secs(warmup + measure).as_nanos() as u64;
    let end = origin + secs(warmup + measure);
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut received_window = 0u64;
    let mut lat = Lat { samples: Vec::new() };
    let mut scratch = String::new();
    let mut buf = Vec::with_capacity(256);
    for i in (0..n).step_by(2) {
        if !live[i] {
            continue;
        }
        let ts = origin.elapsed().as_nanos() as u64;
        buf.clear();
        for _ in 0..window {
            push_msg(&mut buf, &heads[i], ts, size, &mut scratch);
        }
        sent += window as u64;
        pool.conns[i].out.push(&buf);
        pool.flush(i, None);
    }
    let mut ready = Vec::with_capacity(4096);
    let mut last_report = (origin, 0u64);
    let seen_dropped = pool.fail.dropped;
    let mut replying = true;
    let drain_end = end + secs(drain);
    loop {
        let now = Instant::now();
        if live_pairs == 0 {
            break;
        }
        if now >= end {
            // Stop answering; collect what is still in flight.
            replying = false;
            if received >= sent || now >= drain_end || pool.open_count() == 0 {
                break;
            }
        }
        if replying && now.duration_since(last_report.0) >= Duration::from_secs(1) {
            let dt = now.duration_since(last_report.0).as_secs_f64();
            eprintln!("direct: {:.0} msgs/s", (received - last_report.1) as f64 / dt);
            last_report = (now, received);
        }
        let limit = if replying { end } else { drain_end };
        let timeout = limit.saturating_duration_since(now).min(Duration::from_millis(100));
        poll_ready(&mut pool, timeout, &mut ready);
        for &idx in &ready {
            let now_ns = origin.elapsed().as_nanos() as u64;
            let in_window = now_ns >= warm_ns && now_ns < end_ns;
            let head = heads.get(idx).map(String::as_str).unwrap_or("");
            pool.read(idx, |out, ev| {
                if let Event::Message { prefix, .. } = ev {
                    match classify(prefix) {
                        Msg::Data(Some(t)) if t <= now_ns => {
                            received += 1;
                            if in_window {
                                received_window += 1;
                            }
                            if t >= warm_ns && t < end_ns {
                                lat.push(now_ns - t);
                            }
                            if replying {
                                buf.clear();
                                push_msg(&mut buf, head, now_ns, size, &mut scratch);
                                out.push(&buf);
                                sent += 1;
                            }
                        }
                        Msg::Data(_) | Msg::Other | Msg::Ready => trouble.bad += 1,
                        Msg::Error | Msg::AuthFailed => {
                            trouble.errors += 1;
                            trouble.note(String::from_utf8_lossy(prefix).into_owned());
                        }
                        Msg::Sid | Msg::AuthOk => {}
                    }
                }
            });
            pool.flush(idx, None);
        }
        if pool.fail.dropped != seen_dropped && pool.open_count() == 0 {
            pool.fail.note("every connection was lost".to_string());
            break;
        }
    }
    let measured_secs = Instant::now()
        .min(end)
        .saturating_duration_since(origin + secs(warmup))
        .as_secs_f64();
    pool.close_all(None, Duration::from_secs(2));
    let mut o = Obj::new();
    o.str("scenario", "direct")
        .int("pairs", pairs as u64)
        .int("live_pairs", live_pairs as u64)
        .int("size", size as u64)
        .int("window", window as u64)
        .num("warmup_secs", warmup)
        .num("measured_secs", measured_secs)
        .int("msgs", received_window)
        .num("msgs_per_sec", received_window as f64 / measured_secs.max(1e-9))
        .int("sent_total", sent)
        .int("received_total", received)
        .int("lost", sent.saturating_sub(received));
    lat.fill(&mut o);
    o.obj("achex", &trouble.json())
        .obj("failures", &failures_json(&pool.fail));
    Ok((o.finish(), live_pairs > 0 && received_window > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(f: &[u8]) -> Vec<u8> {
        let len = (f[1] & 0x7f) as usize;
        let (hl, len) = if len == 126 {
            (8, u16::from_be_bytes([f[2], f[3]]) as usize)
        } else {
            (6, len)
        };
        let key = &f[hl - 4..hl];
        f[hl..hl + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i & 3])
            .collect()
    }

    #[test]
    fn messages_are_padded_to_size() {
        let (mut buf, mut s) = (Vec::new(), String::new());
        push_msg(&mut buf, "\"bc\":\"g\",", 123_456_789, 64, &mut s);
        let text = unmask(&buf);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with(b"{\"bc\":\"g\",\"t\":123456789,\"p\":\"xx"));
        assert!(text.ends_with(b"x\"}"));
        // Too small a size still gives valid JSON, just unpadded.
        buf.clear();
        push_msg(&mut buf, "\"to\":\"s1\",", 5, 4, &mut s);
        assert_eq!(unmask(&buf), b"{\"to\":\"s1\",\"t\":5,\"p\":\"\"}");
    }

    #[test]
    fn classifies_server_messages() {
        assert_eq!(classify(b"{\"SID\":12}"), Msg::Sid);
        assert_eq!(classify(b"{\"auth\":\"ok\"}"), Msg::AuthOk);
        assert_eq!(
            classify(b"{\"auth\":\"failed\",\"error\":\"wrong password\"}"),
            Msg::AuthFailed
        );
        assert_eq!(classify(b"{\"error\":\"no such user: s9\"}"), Msg::Error);
        assert_eq!(
            classify(b"{\"to\":\"s3\",\"ready\":1,\"FROM\":\"s3\",\"sID\":4}"),
            Msg::Ready
        );
        assert_eq!(
            classify(b"{\"bc\":\"g\",\"t\":987,\"p\":\"xxxx\",\"FROM\":\"pub\",\"sID\":1001}"),
            Msg::Data(Some(987))
        );
        assert_eq!(classify(b"{\"to\":\"s1\",\"t\":42,\"p\":\"\"}"), Msg::Data(Some(42)));
        // A number cut off by the end of the kept prefix is not trusted.
        assert_eq!(classify(b"{\"to\":\"s1\",\"t\":42"), Msg::Data(None));
        assert_eq!(classify(b"{\"bc\":\"g\",\"p\":1}"), Msg::Data(None));
        assert_eq!(classify(b"[1]"), Msg::Other);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"123,"), Some(123));
        assert_eq!(parse_u64(b"123"), None);
        assert_eq!(parse_u64(b",1"), None);
        assert_eq!(parse_u64(b"99999999999999999999999,"), None);
    }
}
