//! loadgen: WebSocket load generator for the wsbroker benchmark harness.
//!
//! Each subcommand runs one scenario against a ws://127.0.0.1 echo server (or,
//! for fanout and direct, an Achex broker) and prints exactly one JSON line on
//! stdout; progress goes to stderr.

mod broker;
mod conn;
mod frame;
mod json;
mod scenarios;

use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "usage:
  loadgen echo    --url ws://127.0.0.1:PORT [--conns 100] [--size 20] [--window 64] [--refill 1] [--secs 5] [--warmup 1]
  loadgen latency --url URL [--rate 5000] [--conns 100] [--size 32] [--secs 5] [--warmup 1]
  loadgen idle    --url URL --pid PID [--conns 10000] [--batch 100] [--hold 2] [--timeout 120]
  loadgen large   --url URL [--size 1048576] [--conns 1] [--window 1] [--secs 5] [--warmup 1]
  loadgen fanout  --url URL [--subs 1000] [--size 64] [--rate 100 | --rate 0 --window 8] [--secs 5] [--warmup 1] [--drain 2]
  loadgen direct  --url URL [--pairs 500] [--size 64] [--window 1] [--secs 5] [--warmup 1] [--drain 2]
  (fanout and direct speak Achex: logins s0, s1, ... with password x; fanout's group is \"g\")
common: [--timeout SECS] bounds the connect phase, [--batch N] connects/handshakes in flight";

pub struct Args {
    map: HashMap<String, String>,
}

impl Args {
    fn parse(list: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut it = list.iter();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                return Err(format!("unexpected argument {k:?}"));
            };
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), v.clone());
        }
        Ok(Args { map })
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.map.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{k}: cannot parse {v:?}")),
        }
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                return Err(format!("unknown option --{k}"));
            }
        }
        Ok(())
    }
}

/// Idle runs hold ~10k sockets; use whatever the hard limit allows.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    raise_nofile();
    let result = match cmd.as_str() {
        "echo" => scenarios::echo(&args),
        "latency" => scenarios::latency(&args),
        "idle" => scenarios::idle(&args),
        "large" => scenarios::large(&args),
        "fanout" => broker::fanout(&args),
        "direct" => broker::direct(&args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown scenario {other:?}")),
    };
    match result {
        Ok((line, ok)) => {
            println!("{line}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

pub fn known(args: &Args, extra: &[&str]) -> Result<(), String> {
    let mut all = vec!["url", "conns", "timeout", "batch"];
    all.extend_from_slice(extra);
    args.check_known(&all)
}
