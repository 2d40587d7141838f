//! schemathesis (PyPI, pinned in tools/openapi/requirements.txt) against the live ingress with a
//! valid test token: no 5xx, every answer conforms to docs/openapi.yaml, and requests without
//! the token are refused. Run by scripts/check-openapi, which installs schemathesis and names
//! it in `PRS_SCHEMATHESIS`; ignored by a plain `cargo test`, which has no schemathesis.

use std::process::Command;

use support::*;

use crate::ingress_env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis: run scripts/check-openapi"]
async fn schemathesis_finds_the_live_ingress_conforming_to_its_openapi_document() {
    let schemathesis = std::env::var("PRS_SCHEMATHESIS")
        .expect("PRS_SCHEMATHESIS names the schemathesis executable (scripts/check-openapi)");
    let keys = Keys::new();
    let mut env = ingress_env(&keys, &[("PREREG_SYNC__INGRESS__REPLY_TIMEOUT", "5s")]);
    env.spawn_app().await;
    let ingress = env.ingress.unwrap();
    let document = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
    let status = tokio::task::spawn_blocking({
        let token = keys.token();
        move || {
            Command::new(schemathesis)
                .arg("run")
                .arg(document)
                .args(["--url", &format!("http://{ingress}")])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                // Every check (`ignored_auth` among them: a request without the token must be
                // refused), except two: MOSIP answers a request it cannot use with HTTP 200 and
                // an error envelope, so the checks that expect a 4xx for schema-violating input
                // do not apply.
                .args(["--checks", "all"])
                .args([
                    "--exclude-checks",
                    "negative_data_rejection,positive_data_acceptance",
                ])
                .args(["--max-examples", "40", "--workers", "2"])
                .status()
                .expect("running schemathesis")
        }
    })
    .await
    .unwrap();
    assert!(
        status.success(),
        "schemathesis found non-conforming answers (see its output)"
    );
}
