//! The dead-letter tool as an operator reads it, through the real binary: header values are
//! strings and numbers (`jq` works on `dlq show` and on an export), `--file -` is stdout, a
//! create failure says why, and a filter on a code that cannot exist is warned about.

use std::path::PathBuf;

use support::*;

use super::operations::dead_letters_of_a_stopped_worker;

/// An empty directory of this test's own.
fn scratch_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prs-{}-{name}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` requests with an unsupported version (PRG_PAM_CORE_002), `tx-version-<i>`, dead-lettered
/// by the worker, which is stopped after.
async fn dead_letter_rejections(env: &mut TestEnv, n: usize) {
    dead_letters_of_a_stopped_worker(env, 0, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_and_export_print_header_values_as_strings() {
    let mut env = TestEnv::new();
    dead_letter_rejections(&mut env, 2).await;

    let shown: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["dlq", "show", "tx-version-0"])).unwrap();
    let headers = &shown["properties"]["headers"];
    assert_eq!(headers["x-error-code"], "PRG_PAM_CORE_002", "{shown:#}");
    assert_eq!(headers["retry-count"], 0, "{shown:#}");
    assert_eq!(shown["properties"]["message_id"], "tx-version-0");

    let dir = scratch_dir(&env, "stdout");
    let out = env
        .command()
        .current_dir(&dir)
        .args(["dlq", "export", "--file", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("-").exists(), "`-` is stdout, not a file");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("stdout holds only the archive"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|line| line["headers"]["x-error-code"] == "PRG_PAM_CORE_002"),
        "{lines:#?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exported 2 message(s) to -"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_says_why_it_cannot_create_its_file() {
    let env = TestEnv::new();
    let dir = scratch_dir(&env, "exists");
    let existing = dir.join("archive.jsonl");
    std::fs::write(&existing, "").unwrap();
    let missing_dir = dir.join("no-such-dir").join("archive.jsonl");
    for (file, why) in [
        (
            &existing,
            "it exists, and an export never overwrites a file",
        ),
        (&missing_dir, "No such file or directory"),
    ] {
        let out = env.cli(&["dlq", "export", "--file", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(why), "{file:?}: {stderr}");
        assert!(!stderr.contains("must not exist yet"), "{stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_an_unknown_error_code_is_warned_about() {
    let mut env = TestEnv::new();
    dead_letter_rejections(&mut env, 1).await;
    let warned = |code: &str| {
        let out = env.cli(&["dlq", "list", "--error-code", code]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).contains("it will match nothing")
    };
    assert!(warned("NOPE"));
    assert!(warned("prg_pam_core_002"), "codes are case-sensitive");
    assert!(!warned("PRG_PAM_CORE_002"));
    assert!(!warned("broker: delivery_limit"));
}
