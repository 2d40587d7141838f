//! A binary `COPY … FROM STDIN (FORMAT binary)` payload, built in one buffer and sent as one
//! message. The driver's `BinaryCopyInWriter` hands the connection a piece every 4 KiB (each a
//! wake-up of the connection task and a socket write) after an `await` per row: with it the
//! worker spent half as much CPU again on a batch's PRID rows as with the INSERT's array
//! parameters (docs/performance-log.md, 2026-11-29).

use std::io::Cursor;

use chrono::NaiveDateTime;
use deadpool_postgres::Transaction;
use futures_util::{SinkExt, pin_mut};
use tokio_postgres::Statement;

use crate::storage::StorageError;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC), from which binary
/// timestamps count.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One field of a row: the PRID tables are written with text and timestamps only.
pub(super) enum Field<'a> {
    Text(&'a str),
    Timestamp(NaiveDateTime),
}

/// The rows of one `COPY`, in PostgreSQL's binary copy format.
pub(super) struct CopyData(Vec<u8>);

impl CopyData {
    /// No rows yet: the format's signature, its flags (no OIDs) and header extension length.
    pub(super) fn new() -> CopyData {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&[0; 8]);
        CopyData(buf)
    }

    pub(super) fn row(&mut self, fields: &[Field]) {
        // Lengths fit: a row has a handful of fields, and no column holds 2 GiB.
        let buf = &mut self.0;
        buf.extend_from_slice(
            &i16::try_from(fields.len())
                .unwrap_or(i16::MAX)
                .to_be_bytes(),
        );
        for field in fields {
            match field {
                Field::Text(text) => {
                    buf.extend_from_slice(
                        &i32::try_from(text.len()).unwrap_or(i32::MAX).to_be_bytes(),
                    );
                    buf.extend_from_slice(text.as_bytes());
                }
                Field::Timestamp(at) => {
                    let micros = at.and_utc().timestamp_micros() - POSTGRES_EPOCH_MICROS;
                    buf.extend_from_slice(&8_i32.to_be_bytes());
                    buf.extend_from_slice(&micros.to_be_bytes());
                }
            }
        }
    }

    /// Runs `statement`, a `COPY … FROM STDIN (FORMAT binary)`, with these rows.
    pub(super) async fn send(
        mut self,
        tx: &Transaction<'_>,
        statement: &Statement,
    ) -> Result<(), StorageError> {
        self.0.extend_from_slice(&(-1_i16).to_be_bytes());
        let sink = tx.copy_in(statement).await?;
        pin_mut!(sink);
        sink.send(Cursor::new(self.0)).await?;
        sink.finish().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use tokio_postgres::types::{ToSql, Type};

    use super::*;

    /// Each field as the driver itself encodes it (its `ToSql`), behind a length.
    #[test]
    fn fields_are_encoded_as_the_driver_encodes_them() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let times = [
            day(2026, 11, 30)
                .and_hms_micro_opt(7, 5, 8, 850_123)
                .unwrap(),
            day(1999, 12, 31)
                .and_hms_micro_opt(23, 59, 59, 999_999)
                .unwrap(),
        ];
        let mut data = CopyData::new();
        data.row(&[
            Field::Text("75124301328620"),
            Field::Timestamp(times[0]),
            Field::Timestamp(times[1]),
        ]);
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&3_i16.to_be_bytes());
        expected.extend_from_slice(&14_i32.to_be_bytes());
        expected.extend_from_slice(b"75124301328620");
        for at in times {
            let mut field = bytes::BytesMut::new();
            at.to_sql(&Type::TIMESTAMP, &mut field).unwrap();
            expected.extend_from_slice(&8_i32.to_be_bytes());
            expected.extend_from_slice(&field);
        }
        assert_eq!(data.0, expected);
    }
}
