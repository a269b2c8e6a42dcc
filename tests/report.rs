//! `evalkit report` on two real runs of one "training job" (the two shared checkpoints, recorded
//! at steps 100 and 200): the page renders in headless Chromium (a screenshot kept in
//! `target/test-artifacts/`, checked not blank), the numbers in the rendered page are the ones in
//! results.json, and the PNG charts beside it are real pictures.

use crate::cli::{evalkit, text};
use crate::util::{data_dir, model_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `model` on a few rows of four kinds into `out`, recorded at `step`.
fn run(model: &str, step: u64, out: &Path) -> serde_json::Value {
    let o = evalkit(&[
        "run",
        "-q",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--model",
        model_dir(model).to_str().expect("utf8"),
        "--data-dir",
        data_dir().to_str().expect("utf8"),
        "--tasks",
        "arc_easy,lambada_openai,wikitext,synthetic_copy",
        "--limit",
        "6",
        "--step",
        &step.to_string(),
        "--output",
        out.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    assert_eq!(doc["config"]["step"], step, "--step is recorded");
    doc
}

/// The browser: `$EVALKIT_CHROMIUM`, else Debian's `chromium` (or another Chromium build) on
/// the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EVALKIT_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `args` (the flags that keep it off the network and
/// out of any profile) and returns its stdout.
fn headless(browser: &Path, profile: &Path, page: &Path, args: &[&str]) -> String {
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        o.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Decodes a PNG and returns (width, height, share of pixels that are not white, distinct
/// colours seen).
fn picture(path: &Path) -> (u32, u32, f64, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let inked = pixels.iter().filter(|p| p.iter().take(3).any(|&c| c < 240)).count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    (
        info.width,
        info.height,
        inked as f64 / pixels.len() as f64,
        colours.len(),
    )
}

#[test]
fn report_renders_in_chromium_with_the_numbers_of_results_json() {
    crate::util::init();
    let tmp = crate::tempdir!("report");
    let (a, b, out) = (
        tmp.path().join("step100"),
        tmp.path().join("step200"),
        tmp.path().join("report"),
    );
    let docs = [run("stories260K-hf", 100, &a), run("tiny-gpt2-random", 200, &b)];

    // Several runs need a destination.
    let refused = evalkit(&["report", a.to_str().expect("utf8"), b.to_str().expect("utf8")]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("--output"), "{}", text(&refused));
    // Markdown to a named file; HTML, a folder, refuses a file name.
    let md = tmp.path().join("md/notes.md");
    let o = evalkit(&[
        "report",
        "--format",
        "md",
        a.to_str().expect("utf8"),
        "--output",
        md.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let notes = std::fs::read_to_string(&md).expect("notes.md");
    assert!(
        notes.contains("| task | metric |") && notes.contains("## evalkit results: stories260K-hf (step 100)\n"),
        "{notes}"
    );
    // Several runs: each heading names its run.
    let o = evalkit(&[
        "report",
        "--format",
        "md",
        a.to_str().expect("utf8"),
        b.to_str().expect("utf8"),
        "--output",
        md.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let notes = std::fs::read_to_string(&md).expect("notes.md");
    // (The folder names say the steps, so the steps are not said again.)
    for heading in ["stories260K-hf (step100)", "tiny-gpt2-random (step200)"] {
        assert!(notes.contains(&format!("## evalkit results: {heading}\n")), "{notes}");
    }
    let page_file = tmp.path().join("page.html");
    let o = evalkit(&[
        "report",
        a.to_str().expect("utf8"),
        "--output",
        page_file.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("names a file"), "{}", text(&o));
    assert!(!page_file.exists());

    // A chart an earlier report left in the folder does not outlive this one.
    std::fs::create_dir_all(out.join("charts")).expect("charts");
    std::fs::write(out.join("charts/bars-old_metric.png"), b"old").expect("old chart");
    let o = evalkit(&[
        "report",
        a.to_str().expect("utf8"),
        b.to_str().expect("utf8"),
        "--output",
        out.to_str().expect("utf8"),
        "--rows",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !out.join("charts/bars-old_metric.png").exists(),
        "the old chart is removed"
    );
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing is fetched"
    );

    // PNG charts: bars for every metric, score against step for the stepped runs.
    for chart in [
        "bars-acc",
        "bars-perplexity",
        "bars-word_perplexity",
        "steps-acc",
        "steps-bits_per_byte",
    ] {
        let png = out.join("charts").join(format!("{chart}.png"));
        let (w, h, inked, colours) = picture(&png);
        assert!(w >= 600 && h >= 100, "{chart}: {w}x{h}");
        assert!(
            inked > 0.01 && colours > 8,
            "{chart} looks blank: {inked:.3} inked, {colours} colours"
        );
        assert!(
            html.contains(&format!("{chart}.png\"")),
            "{chart} is linked from the page"
        );
    }

    let Some(browser) = chromium() else {
        return crate::util::skip_unless_required(
            "EVALKIT_REQUIRE_BROWSER",
            "no chromium was found for the report's browser check (install Debian's chromium or set EVALKIT_CHROMIUM)",
        );
    };
    let profile = tmp.path().join("chromium-profile");

    // The screenshot, kept for people to look at.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact folder");
    let shot = artifacts.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &browser,
        &profile,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let (w, h, inked, colours) = picture(&shot);
    assert_eq!((w, h), (1280, 2400));
    assert!(
        inked > 0.03 && colours > 32,
        "the screenshot looks blank: {inked:.3} of pixels inked, {colours} colours ({})",
        shot.display()
    );

    // The DOM as the browser built it: every metric of every run, in the cell that names it.
    let dom = headless(&browser, &profile, &page, &["--dump-dom"]);
    let cell = regex::Regex::new(
        r#"<td class="num result" data-run="(\d+)" data-task="([^"]+)" data-metric="([^"]+)" data-value="([^"]*)">([^<]*)</td>"#,
    )
    .expect("regex");
    let mut seen = 0;
    for c in cell.captures_iter(&dom) {
        let (run, task, metric, raw, shown) = (&c[1], &c[2], &c[3], &c[4], &c[5]);
        let want = &docs[run.parse::<usize>().expect("run")]["results"][task][metric];
        match want.as_f64() {
            Some(v) => {
                assert_eq!(shown, format!("{v:.4}"), "{task}.{metric} of run {run}");
                assert_eq!(raw.parse::<f64>().ok(), Some(v), "{task}.{metric} of run {run}");
                seen += 1;
            }
            None => assert_eq!(shown, "—", "{task}.{metric} of run {run} is absent"),
        }
    }
    let reported: usize = docs
        .iter()
        .map(|d| {
            d["results"]
                .as_object()
                .expect("results")
                .values()
                .flat_map(|e| e.as_object().expect("entry").iter())
                .filter(|(k, v)| {
                    v.is_number()
                        && !k.ends_with("_stderr")
                        && !evalkit::core::evaluator::RECORD_KEYS.contains(&k.as_str())
                })
                .count()
        })
        .sum();
    assert!(reported > 10);
    assert_eq!(seen, reported, "every reported number is in the rendered page");
    assert!(dom.matches("<svg").count() >= 10, "charts are inline SVG");
    assert!(
        dom.contains(r#"href="charts/steps-acc.png""#),
        "PNGs are linked beside the report"
    );
    assert!(
        dom.contains("4 of 6 rows (the worst 4"),
        "sample tables say what they leave out"
    );
}
