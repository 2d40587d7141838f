//! The two ways of writing PRID rows against a real database (the local server).

use chrono::NaiveDate;
use tokio_postgres::error::SqlState;

use super::*;
use crate::storage::{
    Database, batching::BatchHandler, migrate, model::StoreOutcome, transactions::Stores,
};

fn new(id: &str, prids: &[&str], hour: u32) -> NewTransaction {
    let at = NaiveDate::from_ymd_opt(2026, 11, 30)
        .and_then(|day| day.and_hms_opt(hour, 0, 0))
        .unwrap();
    NewTransaction {
        transaction_id: id.into(),
        app_id: "rp".into(),
        body_sha256: "0".repeat(64),
        received_at: at,
        request_time: at,
        prids: prids.iter().map(|prid| prid.to_string()).collect(),
        reply_body: id.as_bytes().to_vec(),
        lang_code: "eng".into(),
        created_by: "prereg-sync".into(),
    }
}

/// A fresh migrated database on the local server, and its name (the test drops it).
async fn database() -> (Database, String) {
    let name = format!("prs_unit_rows_{}", uuid::Uuid::new_v4().simple());
    let vars = [(
        "DATABASE_URL".to_owned(),
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
    )]
    .into();
    let settings = crate::config::Settings::load_from(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
        &vars,
    )
    .unwrap();
    let database = Database::new(&settings.database).unwrap();
    migrate::prepare_database(&database, true).await.unwrap();
    (database, name)
}

async fn table(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// COPY keeps exactly the rows `INSERT … ON CONFLICT DO NOTHING` keeps within a batch, and a
/// PRID stored before sends the batch through the fallback with the same answers.
#[tokio::test]
async fn copy_keeps_the_rows_insert_keeps_and_a_stored_prid_falls_back() {
    let (database, name) = database().await;
    let pool = database.pool().unwrap();
    // p2 twice (the earlier request time wins), (p3, 09:00) twice (one receipt; the
    // smaller transaction ID owns the row).
    let batch = [
        new("tx-a", &["p1", "p2"], 10),
        new("tx-b", &["p2", "p3"], 9),
        new("tx-c", &["p3"], 9),
    ];
    let stored: Vec<&NewTransaction> = batch.iter().collect();
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let newly = write(&tx, &stored, Method::Copy).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(newly, [("tx-a".into(), 1), ("tx-b".into(), 2)].into());
    let processed = r#"
        SELECT prereg_id || ' ' || prereg_trn_id || ' ' || first_received_dtimes
        FROM prereg.processed_prereg_list ORDER BY 1
    "#;
    let receipts = r#"
        SELECT prereg_id || ' ' || received_dtimes
        FROM prereg.intf_processed_prereg_list ORDER BY 1
    "#;
    assert_eq!(
        table(&client, processed).await,
        [
            "p1 tx-a 2026-11-30 10:00:00",
            "p2 tx-b 2026-11-30 09:00:00",
            "p3 tx-b 2026-11-30 09:00:00"
        ]
    );
    assert_eq!(
        table(&client, receipts).await,
        [
            "p1 2026-11-30 10:00:00",
            "p2 2026-11-30 09:00:00",
            "p2 2026-11-30 10:00:00",
            "p3 2026-11-30 09:00:00"
        ]
    );

    a_stored_prid_falls_back(&pool, &mut client, processed, receipts).await;
    a_recorded_transaction_falls_back(&pool, &client, processed).await;
    the_first_failure_is_the_one_reported(&mut client).await;
    drop((client, pool));
    let (admin, driver) = database.connect(Some("postgres")).await.unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    drop(admin);
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the connection's end once the client is dropped: its failures reached the statements"
    )]
    let _ = driver.await;
}

/// A batch with a PRID stored already: COPY refuses it, the store writes it with INSERT, one
/// audit row per stored transaction, every row left pending for the consumed-status job.
async fn a_stored_prid_falls_back(
    pool: &deadpool_postgres::Pool,
    client: &mut deadpool_postgres::Client,
    processed: &str,
    receipts: &str,
) {
    // p1 is stored: COPY refuses the batch, the store writes it with INSERT instead.
    let again = [new("tx-d", &["p1", "p4"], 11)];
    let stored: Vec<&NewTransaction> = again.iter().collect();
    let tx = client.transaction().await.unwrap();
    let refused = write(&tx, &stored, Method::Copy).await.unwrap_err();
    drop(tx);
    assert!(
        matches!(&refused, StorageError::Db(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION)),
        "{refused}"
    );
    let answers = Stores::new(pool.clone()).handle(&again).await.unwrap();
    assert_eq!(
        answers.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [StoreOutcome::Stored { newly_processed: 1 }]
    );
    assert_eq!(table(client, processed).await.len(), 4);
    assert_eq!(table(client, receipts).await.len(), 6);
    let count = |sql: &'static str| {
        let client = &*client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM prereg.sync_audit").await,
        4,
        "one audit row per stored transaction"
    );
    // Both ways leave every row pending for the consumed-status job (its partial index).
    assert_eq!(
        count(
            r#"
            SELECT count(*) FROM prereg.processed_prereg_list
            WHERE status_code = 'Consumed' AND status_comments = 'Processed by registration processor'
            "#
        )
        .await,
        4
    );
}

/// A batch holding a transaction ID recorded already (a duplicate the lookup could not see: it
/// committed in between): the first attempt's plain `INSERT` of the transaction rows refuses
/// it, and the fallback answers it with the recorded transaction and stores its neighbour.
async fn a_recorded_transaction_falls_back(
    pool: &deadpool_postgres::Pool,
    client: &deadpool_postgres::Client,
    processed: &str,
) {
    let batch = [new("tx-d", &["p5"], 12), new("tx-e", &["p6"], 12)];
    let answers = Stores::new(pool.clone()).handle(&batch).await.unwrap();
    let answers: Vec<StoreOutcome> = answers.into_iter().map(Result::unwrap).collect();
    assert!(
        matches!(&answers[0], StoreOutcome::AlreadyRecorded(recorded) if recorded.reply_body == b"tx-d"),
        "{answers:?}"
    );
    assert_eq!(answers[1], StoreOutcome::Stored { newly_processed: 1 });
    let rows = table(client, processed).await;
    assert!(
        rows.contains(&"p6 tx-e 2026-11-30 12:00:00".to_owned()),
        "{rows:?}"
    );
    assert!(!rows.iter().any(|row| row.starts_with("p5")), "{rows:?}");
}

/// When one of the statements sent together fails, the ones after it fail only because the
/// transaction was aborted (25P02); the error reported is the first one, which says why (here a
/// PRID too long for its column: permanent, not worth a retry).
async fn the_first_failure_is_the_one_reported(client: &mut deadpool_postgres::Client) {
    let too_long = "9".repeat(37);
    for _ in 0..20 {
        let batch = [new("tx-f", &[too_long.as_str()], 13)];
        let stored: Vec<&NewTransaction> = batch.iter().collect();
        let tx = client.transaction().await.unwrap();
        let err = write(&tx, &stored, Method::Insert).await.unwrap_err();
        assert!(
            matches!(&err, StorageError::Db(err) if err.code() == Some(&SqlState::STRING_DATA_RIGHT_TRUNCATION)),
            "{err}"
        );
    }
}
