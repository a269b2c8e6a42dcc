//! The Hugging Face Hub loader against a hub cache the test lays out itself
//! (`datasets--google--boolq/{refs/main, snapshots/<commit>/data/validation-*.parquet}`) with
//! real BoolQ rows, read offline.

use crate::util::{data_dir, open};
use evalkit::suites::hub::{load_rows, HubOptions, HubSource};
use evalkit::suites::{load, LoadOptions};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

/// Writes (question, answer, passage) rows as a snappy-compressed parquet file, as the hub has.
fn write_boolq_parquet(path: &Path, rows: &[(String, bool, String)], answer_as_text: bool) {
    let answer_type = if answer_as_text {
        "BYTE_ARRAY answer (UTF8)"
    } else {
        "BOOLEAN answer"
    };
    let schema = format!("message schema {{ REQUIRED BYTE_ARRAY question (UTF8); REQUIRED {answer_type}; REQUIRED BYTE_ARRAY passage (UTF8); }}");
    let schema = Arc::new(parse_message_type(&schema).expect("schema"));
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(path).expect("create");
    let mut w = SerializedFileWriter::new(file, schema, props).expect("writer");
    let mut g = w.next_row_group().expect("row group");
    let text = |f: &dyn Fn(&(String, bool, String)) -> String| {
        rows.iter().map(|r| ByteArray::from(f(r).as_str())).collect::<Vec<_>>()
    };
    for col in 0..3 {
        let mut c = g.next_column().expect("column").expect("exists");
        match (col, answer_as_text) {
            (0, _) => c
                .typed::<ByteArrayType>()
                .write_batch(&text(&|r| r.0.clone()), None, None)
                .map(|_| ()),
            (1, false) => c
                .typed::<BoolType>()
                .write_batch(&rows.iter().map(|r| r.1).collect::<Vec<_>>(), None, None)
                .map(|_| ()),
            (1, true) => c
                .typed::<ByteArrayType>()
                .write_batch(&text(&|r| r.1.to_string()), None, None)
                .map(|_| ()),
            _ => c
                .typed::<ByteArrayType>()
                .write_batch(&text(&|r| r.2.clone()), None, None)
                .map(|_| ()),
        }
        .expect("write");
        c.close().expect("close column");
    }
    g.close().expect("close group");
    w.close().expect("close file");
}

/// Lays out repository folder `repo` (`datasets--<org>--<name>`, `models--<org>--<name>`) in
/// the hub cache `cache`: `refs/<rev>` naming `commit`, and that commit's snapshot folder,
/// which it returns.
fn hub_snapshot(cache: &Path, repo: &str, rev: &str, commit: &str) -> std::path::PathBuf {
    let repo = cache.join(repo);
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs").join(rev), commit).expect("ref");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).expect("snapshot");
    snap
}

/// Where dataset repository folder `repo` at `main` (commit `commit`) holds its validation
/// split in the hub cache `cache` (`data/validation-00000-of-00001.parquet`, its folders made).
fn validation_parquet(cache: &Path, repo: &str, commit: &str) -> std::path::PathBuf {
    let data = hub_snapshot(cache, repo, "main", commit).join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    data.join("validation-00000-of-00001.parquet")
}

fn lay_out_cache(cache: &Path, rows: &[(String, bool, String)], answer_as_text: bool) {
    let path = validation_parquet(
        cache,
        "datasets--google--boolq",
        "0123456789abcdef0123456789abcdef01234567",
    );
    write_boolq_parquet(&path, rows, answer_as_text);
}

fn real_rows(n: usize) -> Vec<(String, bool, String)> {
    let text = std::fs::read_to_string(data_dir().join("boolq/dev.jsonl")).expect("boolq");
    text.lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("row");
            (
                v["question"].as_str().expect("q").into(),
                v["answer"].as_bool().expect("a"),
                v["passage"].as_str().expect("p").into(),
            )
        })
        .collect()
}

#[test]
fn hub_cache_offline_loads_real_rows() {
    let tmp = crate::tempdir!("hub");
    let rows = real_rows(12);
    lay_out_cache(tmp.path(), &rows, false);
    let hub = HubOptions {
        cache_dir: tmp.path().to_path_buf(),
        offline: true,
    };
    let src = evalkit::suites::hub::source("boolq").expect("boolq has a hub source");
    let got: Vec<serde_json::Value> = load_rows(&src, &hub).expect("rows");
    assert_eq!(got.len(), 12);
    assert_eq!(got[0]["question"], rows[0].0.as_str());
    assert_eq!(got[3]["answer"], rows[3].1);

    // The suite reads the hub exactly as its local file: same evaluation, same scores.
    let from_hub = load(
        "boolq",
        &LoadOptions {
            hub: Some(hub.clone()),
            ..LoadOptions::new(tmp.path().join("no-data"))
        },
    )
    .expect("hub suite");
    let local = load("boolq", &LoadOptions::new(data_dir())).expect("local suite");
    let (model, tok) = open("stories260K-hf");
    let opts = evalkit::core::RunOptions {
        subset: Some(evalkit::core::kinds::Subset::First(12)),
        ..Default::default()
    };
    let env = evalkit::core::kinds::Env {
        model: model.as_ref(),
        tokenizer: &tok,
        options: &opts,
        journal_dir: None,
        progress: None,
    };
    let a = from_hub.evaluations[0].evaluate(&env).expect("hub rows run");
    let b = local.evaluations[0].evaluate(&env).expect("local rows run");
    assert_eq!(a.samples, b.samples);
}

#[test]
fn hub_errors_name_what_is_missing_or_malformed() {
    let tmp = crate::tempdir!("hub-errors");
    let hub = HubOptions {
        cache_dir: tmp.path().to_path_buf(),
        offline: true,
    };
    let src = HubSource {
        repo: "google/boolq".into(),
        revision: "main".into(),
        files: vec!["data/validation-00000-of-00001.parquet".into()],
    };
    let e = load_rows::<serde_json::Value>(&src, &hub).expect_err("empty cache, offline");
    let msg = e.to_string();
    assert!(
        msg.contains("datasets--google--boolq") && msg.contains("offline"),
        "{msg}"
    );

    lay_out_cache(tmp.path(), &real_rows(3), true);
    // A missing field is named itself, as in the data directory's JSON files.
    #[derive(Debug, serde::Deserialize)]
    struct Labelled {
        #[allow(dead_code)]
        label: i64,
    }
    let src = evalkit::suites::hub::source("boolq").expect("boolq has a hub source");
    let msg = load_rows::<Labelled>(&src, &hub).expect_err("no label").to_string();
    assert!(
        msg.contains("validation-00000-of-00001.parquet:1: field `label`"),
        "{msg}"
    );

    let e = load(
        "boolq",
        &LoadOptions {
            hub: Some(hub),
            ..LoadOptions::new(tmp.path().to_path_buf())
        },
    )
    .err()
    .expect("answer is text");
    let msg = e.to_string();
    assert!(
        msg.contains("validation-00000-of-00001.parquet:1: field `answer`"),
        "{msg}"
    );

    // A task without a hub source is read from the data directory.
    assert!(evalkit::suites::hub::source("piqa").is_none());
    let piqa = load(
        "piqa",
        &LoadOptions {
            hub: Some(HubOptions::default()),
            ..LoadOptions::new(data_dir())
        },
    )
    .expect("local piqa");
    assert_eq!(piqa.evaluations[0].len(), 1838);
}

/// Lays out `models--<org>--<name>` in a hub cache: `refs/<rev>` naming a commit whose snapshot
/// holds the files of a shared checkpoint (the cache's real layout: blobs linked from snapshots).
fn lay_out_model(cache: &Path, id: &str, rev: &str, commit: &str, checkpoint: &Path) {
    let name = format!("models--{}", id.replace('/', "--"));
    let snap = hub_snapshot(cache, &name, rev, commit);
    let repo = cache.join(&name);
    std::fs::create_dir_all(repo.join("blobs")).expect("blobs");
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "model.safetensors",
    ] {
        let blob = repo.join("blobs").join(format!("{f}.blob"));
        std::fs::copy(checkpoint.join(f), &blob).expect("copy");
        std::os::unix::fs::symlink(&blob, snap.join(f)).expect("link");
    }
}

#[test]
fn models_by_hub_id_resolve_through_the_cache_offline() {
    let tmp = crate::tempdir!("hub-model");
    let cache = tmp.path().join("hub");
    let checkpoint = crate::util::model_dir("stories260K-hf");
    lay_out_model(
        &cache,
        "evalkit-test/stories260K",
        "main",
        "0123456789abcdef0123456789abcdef01234567",
        &checkpoint,
    );
    let run = |model: &str, out: &Path, offline: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_evalkit"));
        c.args([
            "run", "-q", "--device", "cpu", "--tasks", "arc_easy", "--limit", "5", "--model", model,
        ])
        .arg("--data-dir")
        .arg(data_dir())
        .arg("--output")
        .arg(out)
        .env("HF_HUB_CACHE", &cache)
        .env_remove("HF_HUB_OFFLINE");
        if offline {
            c.arg("--offline");
        }
        c.output().expect("runs")
    };
    let (by_id, by_dir) = (tmp.path().join("by-id"), tmp.path().join("by-dir"));
    let o = run("evalkit-test/stories260K@main", &by_id, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(checkpoint.to_str().expect("utf8"), &by_dir, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same checkpoint by id and by directory: the same samples.
    assert_eq!(
        std::fs::read(by_id.join("samples_arc_easy.jsonl")).expect("samples"),
        std::fs::read(by_dir.join("samples_arc_easy.jsonl")).expect("samples")
    );
    // A commit hash as the revision finds its snapshot folder, with no `refs/<commit>` file
    // (Python's huggingface_hub writes none for it).
    let by_commit = tmp.path().join("by-commit");
    let o = run(
        "evalkit-test/stories260K@0123456789abcdef0123456789abcdef01234567",
        &by_commit,
        true,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(by_commit.join("samples_arc_easy.jsonl")).expect("samples"),
        std::fs::read(by_dir.join("samples_arc_easy.jsonl")).expect("samples")
    );
    // A revision the cache does not hold, offline: an error naming the file and the cache path.
    let o = run("evalkit-test/stories260K@v2", &tmp.path().join("missing"), true);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("config.json of model evalkit-test/stories260K at revision v2") && err.contains("offline"),
        "{err}"
    );
}

/// A HellaSwag row in the hub's layout: activity label, `ctx_a`, `ctx_b`, endings, label.
type HellaswagRow<'a> = (&'a str, &'a str, &'a str, [&'a str; 4], &'a str);

/// Writes HellaSwag rows in the hub's layout (`activity_label`, `ctx_a`, `ctx_b`, the list
/// `endings`, `label` as text) to `Rowan/hellaswag`'s validation file in the hub cache `cache`.
fn lay_out_hellaswag(cache: &Path, rows: &[HellaswagRow<'_>]) -> std::path::PathBuf {
    let path = validation_parquet(
        cache,
        "datasets--Rowan--hellaswag",
        "89abcdef0123456789abcdef0123456789abcdef",
    );
    let schema = "message schema { REQUIRED BYTE_ARRAY activity_label (UTF8); REQUIRED BYTE_ARRAY ctx_a (UTF8); \
                  REQUIRED BYTE_ARRAY ctx_b (UTF8); REQUIRED group endings (LIST) { REPEATED group list { \
                  REQUIRED BYTE_ARRAY element (UTF8); } } REQUIRED BYTE_ARRAY label (UTF8); }";
    let schema = Arc::new(parse_message_type(schema).expect("schema"));
    let file = std::fs::File::create(&path).expect("create");
    let mut w = SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build())).expect("writer");
    let mut g = w.next_row_group().expect("row group");
    let texts = |f: &dyn Fn(&HellaswagRow<'_>) -> Vec<String>| {
        rows.iter()
            .flat_map(f)
            .map(|s| ByteArray::from(s.as_str()))
            .collect::<Vec<_>>()
    };
    let columns = [
        texts(&|r| vec![r.0.to_string()]),
        texts(&|r| vec![r.1.to_string()]),
        texts(&|r| vec![r.2.to_string()]),
        texts(&|r| r.3.iter().map(|e| e.to_string()).collect()),
        texts(&|r| vec![r.4.to_string()]),
    ];
    for (i, values) in columns.iter().enumerate() {
        let mut c = g.next_column().expect("column").expect("exists");
        let written = if i == 3 {
            // Four endings a row: each row's first starts a new list (repetition level 0).
            let rep: Vec<i16> = (0..values.len()).map(|k| i16::from(k % 4 != 0)).collect();
            let def = vec![1i16; values.len()];
            c.typed::<ByteArrayType>().write_batch(values, Some(&def), Some(&rep))
        } else {
            c.typed::<ByteArrayType>().write_batch(values, None, None)
        };
        written.expect("write");
        c.close().expect("close column");
    }
    g.close().expect("close group");
    w.close().expect("close file");
    path
}

#[test]
fn hub_hellaswag_rows_load_and_their_errors_name_the_parquet_file() {
    let tmp = crate::tempdir!("hub-hellaswag");
    let row = (
        "Removing ice from car",
        "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
        "then",
        [
            ", the man adds wax to the windshield.",
            ", a woman puts on a jacket.",
            ", the man removes the snow.",
            ", the man walks [title] away.",
        ],
        "3",
    );
    let path = lay_out_hellaswag(tmp.path(), &[row, row]);
    let opts = LoadOptions {
        hub: Some(HubOptions {
            cache_dir: tmp.path().to_path_buf(),
            offline: true,
        }),
        ..LoadOptions::new(tmp.path().join("no-data"))
    };
    let loaded = load("hellaswag", &opts).expect("hub hellaswag");
    assert_eq!(loaded.evaluations[0].len(), 2);

    // A label past the endings: the parquet file and the row, not the repository's name.
    let mut bad = row;
    bad.4 = "4";
    let path2 = lay_out_hellaswag(tmp.path(), &[row, bad]);
    assert_eq!(path, path2);
    let e = load("hellaswag", &opts)
        .err()
        .expect("label 4 of 4 endings")
        .to_string();
    assert!(
        e.ends_with(&format!(
            "{}:2: field `label`: \"4\" is not an index of `endings` (it has 4)",
            path.display()
        )),
        "{e}"
    );
}
