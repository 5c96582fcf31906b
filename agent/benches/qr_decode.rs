//! QR decode rate and time per 640x480 frame on the distorted corpus
//! (`tests/qr/corpus`), ours against zbar's `zbarimg` on the same images in the
//! same run.
//!
//! Ours: each JPEG is decoded to gray first (not timed), then
//! `decode::qr::decode_gray` is timed on it `ROUNDS` times; the figure is the
//! median over images of each image's fastest round. zbar: one `zbarimg -q
//! --raw` process over the whole set, its wall time divided by the number of
//! images (so it includes zbar's own JPEG decoding and one process start-up,
//! which is why our own JPEG decode time is printed beside it). A code counts
//! as read when its exact text is in the output; each text in the corpus is
//! unique.
//!
//! `cargo bench -p fleet-agent --bench qr_decode`. Target: at least zbar's rate
//! at no more than its time. `QR_CORPUS=DIR` reads another generated set.
//! Without `zbarimg` (Debian zbar-tools) our figures are printed alone.

use fleet_agent::decode::qr::{self, Pass};
use fleet_hal::camera::convert;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

struct Image {
    file: String,
    distortion: String,
    codes: Vec<String>,
    w: usize,
    h: usize,
    gray: Vec<u8>,
}

fn corpus_dir() -> PathBuf {
    std::env::var_os("QR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/qr/corpus"))
}

fn load(dir: &Path) -> (Vec<Image>, Duration) {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).expect("expected.json"))
            .expect("expected.json is JSON");
    let mut jpeg_time = Duration::ZERO;
    let images = expected["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|e| {
            let file = e["file"].as_str().expect("file").to_string();
            let bytes = std::fs::read(dir.join(&file)).expect("image");
            let t0 = Instant::now();
            let (w, h, gray) = convert::decode_image(&bytes).expect("decodable image");
            jpeg_time += t0.elapsed();
            Image {
                file,
                distortion: e["distortion"].as_str().unwrap_or("").to_string(),
                codes: e["codes"]
                    .as_array()
                    .expect("codes")
                    .iter()
                    .map(|c| c.as_str().expect("text").to_string())
                    .collect(),
                w: w as usize,
                h: h as usize,
                gray,
            }
        })
        .collect::<Vec<_>>();
    let n = images.len().max(1) as u32;
    (images, jpeg_time / n)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = corpus_dir();
    let (images, jpeg_each) = load(&dir);
    let total: usize = images.iter().map(|i| i.codes.len()).sum();

    // Ours.
    let mut times = Vec::new();
    let mut read = 0;
    let mut wrong = 0;
    let mut by_kind: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut first_found: BTreeMap<String, (usize, u64, usize)> = BTreeMap::new();
    let mut ours_per_image = Vec::new();
    for img in &images {
        let mut best = Duration::MAX;
        let mut result = None;
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            let r = qr::decode_traced(img.w, img.h, &img.gray, &Pass::ALL);
            best = best.min(t0.elapsed());
            result = Some(r);
        }
        times.push(best);
        let (codes, trace) = result.expect("a round ran");
        let good = codes.iter().filter(|c| img.codes.contains(&c.text)).count();
        read += good;
        wrong += codes.len() - good;
        ours_per_image.push(good);
        let k = by_kind.entry(&img.distortion).or_default();
        k.0 += img.codes.len();
        k.1 += good;
        for t in trace {
            let e = first_found.entry(format!("{:?}", t.pass)).or_default();
            e.0 += t.new;
            e.1 += t.micros;
            e.2 += 1;
        }
    }
    let ours_median = median(times.clone());
    let ours_mean = times.iter().sum::<Duration>() / images.len().max(1) as u32;

    println!(
        "corpus: {} ({} images, {} codes)",
        dir.display(),
        images.len(),
        total
    );
    println!(
        "ours:  {read}/{total} codes ({:.1}%), {wrong} wrong; median {:.2} ms, mean {:.2} ms per frame \
         (+ {:.2} ms JPEG decode)",
        100.0 * read as f64 / total as f64,
        ms(ours_median),
        ms(ours_mean),
        ms(jpeg_each)
    );
    println!("  passes (codes first read, runs, mean ms per run):");
    for pass in Pass::ALL {
        if let Some((new, micros, runs)) = first_found.get(&format!("{pass:?}")) {
            println!(
                "    {:<14} {:>3} codes {:>4} runs {:>7.2} ms",
                format!("{pass:?}"),
                new,
                runs,
                *micros as f64 / 1000.0 / *runs as f64
            );
        }
    }

    // zbar, one process over the whole set.
    let files: Vec<PathBuf> = images.iter().map(|i| dir.join(&i.file)).collect();
    let t0 = Instant::now();
    let out = Command::new("zbarimg")
        .args(["-q", "--raw"])
        .args(&files)
        .stderr(Stdio::null())
        .output();
    let zbar_wall = t0.elapsed();
    let Ok(out) = out else {
        println!("zbar:  zbarimg not found (apt-get install zbar-tools); no comparison");
        return;
    };
    let seen: HashSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let mut zbar_read = 0;
    for (img, ours) in images.iter().zip(&ours_per_image) {
        let z = img.codes.iter().filter(|c| seen.contains(*c)).count();
        zbar_read += z;
        by_kind.entry(&img.distortion).or_default().2 += z;
        if z > *ours {
            println!("  zbar read more in {} ({z} vs {ours})", img.file);
        }
    }
    let zbar_each = zbar_wall / images.len().max(1) as u32;
    println!(
        "zbar:  {zbar_read}/{total} codes ({:.1}%); {:.2} ms per frame (one process, wall time / images, \
         JPEG decode included)",
        100.0 * zbar_read as f64 / total as f64,
        ms(zbar_each)
    );
    println!("  by distortion (codes: ours / zbar / of):");
    for (k, (of, o, z)) in &by_kind {
        println!("    {k:<14} {o:>3} / {z:>3} / {of:>3}");
    }
    println!(
        "ratio: rate {:.2}x zbar's; time {:.2}x zbar's (ours median + JPEG decode vs zbar per frame)",
        read as f64 / zbar_read.max(1) as f64,
        (ms(ours_median) + ms(jpeg_each)) / ms(zbar_each)
    );
}
