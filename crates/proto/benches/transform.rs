//! Throughput of the transform alone: `uppercase_datagram` on one 64 KiB
//! datagram of ASCII text and one of mixed-script text.
//!
//! `cargo bench -p upcase-proto --bench transform [-- --seconds S] [--data-dir DIR]`
//! prints one line per input, in the same `KEY=VALUE` form as the C load
//! generator's `RESULT` line so that `cargo xtask bench` parses both alike:
//!
//! `TRANSFORM input=ascii bytes=65536 iterations=N seconds=S gbps=G`
//!
//! `--data-dir` also writes the inputs there (`ascii.txt`, `mixed.txt`), so
//! the Python baseline (`crates/bench/python/transform_bench.py`) times exactly the
//! same bytes. Under `cargo test --benches` (no `--bench` argument) every
//! input is transformed once and checked, which keeps this file honest
//! without spending time.
//!
//! A hand-written loop rather than a benchmark framework: the figure wanted
//! is one number per input, parsed by a tool, with no extra dependency.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use upcase_proto::{DatagramReply, uppercase, uppercase_datagram};

/// One full-size datagram's worth of text.
const INPUT_LEN: usize = 64 * 1024;

/// Samples per input; the median is reported, so a burst of noise from the
/// rest of the machine moves one sample, not the figure.
const SAMPLES: u32 = 7;

const ASCII_WORDS: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "udp",
    "server",
    "datagram",
    "uppercase",
    "hello",
    "world,",
    "12000",
    "socket",
    "kurose",
    "ross",
    "Network",
    "packet.",
    "reply",
    "(input)",
    "\n",
];

/// Latin with accents (including `ß`, whose capital is two letters), Greek,
/// Cyrillic, Korean (no case, but multi-byte), emoji, and some ASCII between.
const MIXED_WORDS: &[&str] = &[
    "café",
    "straße",
    "naïve",
    "élève",
    "garçon",
    "ærø",
    "ﬁn",
    "καλημέρα",
    "κόσμε",
    "ωμέγα",
    "привет",
    "мир",
    "ёжик",
    "안녕하세요",
    "세계",
    "유니코드",
    "🙂",
    "🚀",
    "👍🏽",
    "hello",
    "world",
    "udp",
    "\n",
];

/// Text of exactly `INPUT_LEN` bytes, the same on every run and machine:
/// words drawn by a fixed-seed xorshift, padded with spaces at the end.
fn generate(words: &[&str], seed: u32) -> Vec<u8> {
    let mut state = seed;
    let mut text = String::with_capacity(INPUT_LEN);
    loop {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let word = words[state as usize % words.len()];
        if text.len() + word.len() + 1 > INPUT_LEN {
            break;
        }
        text.push_str(word);
        if !word.ends_with('\n') {
            text.push(' ');
        }
    }
    let mut bytes = text.into_bytes();
    bytes.resize(INPUT_LEN, b' ');
    bytes
}

fn inputs() -> [(&'static str, Vec<u8>); 2] {
    [
        ("ascii", generate(ASCII_WORDS, 0x2545_f491)),
        ("mixed", generate(MIXED_WORDS, 0x9e37_79b9)),
    ]
}

/// One server-side transform of `datagram`, returning the reply's length.
///
/// The buffer is not restored between calls: the ASCII path costs the same
/// on text that is already uppercase (it is branch-free per byte), and the
/// Unicode path writes its reply to `scratch`, leaving the input as it was.
fn transform_once(datagram: &mut [u8], scratch: &mut Vec<u8>) -> usize {
    match uppercase_datagram(black_box(datagram), scratch, usize::MAX) {
        DatagramReply::InPlace { len } => black_box(&datagram[..len]).len(),
        DatagramReply::InScratch { len, .. } => black_box(&scratch[..len]).len(),
        DatagramReply::TooLarge(too_large) => too_large.reply_len,
    }
}

/// Bytes per second over `span`, as the median of `SAMPLES` timed batches.
fn measure(input: &[u8], span: Duration) -> (u64, f64) {
    let mut datagram = input.to_vec();
    let mut scratch = Vec::with_capacity(2 * input.len());
    let warm_until = Instant::now() + span / 10;
    while Instant::now() < warm_until {
        transform_once(&mut datagram, &mut scratch);
    }
    let per_sample = span / SAMPLES;
    let mut rates = Vec::new();
    let mut total_iterations = 0;
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let mut iterations = 0u64;
        // Reading the clock every 16 calls keeps its cost out of the figure.
        while start.elapsed() < per_sample {
            for _ in 0..16 {
                transform_once(&mut datagram, &mut scratch);
            }
            iterations += 16;
        }
        let secs = start.elapsed().as_secs_f64();
        rates.push(iterations as f64 * input.len() as f64 / secs);
        total_iterations += iterations;
    }
    rates.sort_by(f64::total_cmp);
    (total_iterations, rates[rates.len() / 2])
}

struct Options {
    timed: bool,
    seconds: f64,
    data_dir: Option<PathBuf>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        timed: false,
        seconds: 2.0,
        data_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Cargo passes `--bench` under `cargo bench` only.
            "--bench" => options.timed = true,
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a value")?;
                options.seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.01..=600.0).contains(s))
                    .ok_or(format!("--seconds: {value:?} is not in 0.01..=600"))?;
            }
            "--data-dir" => {
                let value = args.next().ok_or("--data-dir needs a value")?;
                options.data_dir = Some(PathBuf::from(value));
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(options)
}

fn run() -> Result<(), String> {
    let options = parse_options()?;
    let inputs = inputs();
    if let Some(dir) = &options.data_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, bytes) in &inputs {
            let path = dir.join(format!("{name}.txt"));
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    for (name, bytes) in &inputs {
        let mut datagram = bytes.clone();
        let mut scratch = Vec::new();
        let reply_len = transform_once(&mut datagram, &mut scratch);
        if reply_len != uppercase(bytes).len() {
            return Err(format!("{name}: reply length {reply_len} is wrong"));
        }
        if !options.timed {
            println!("TRANSFORM input={name} bytes={} checked=1", bytes.len());
            continue;
        }
        let span = Duration::from_secs_f64(options.seconds);
        let (iterations, bytes_per_s) = measure(bytes, span);
        println!(
            "TRANSFORM input={name} bytes={} iterations={iterations} seconds={:.3} gbps={:.3}",
            bytes.len(),
            options.seconds,
            bytes_per_s / 1e9
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
