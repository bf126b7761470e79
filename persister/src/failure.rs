//! Telling a database error that will happen again on every retry of the same message (the
//! message goes to the dead-letter topic) from one that may pass next time (the batch is
//! retried with backoff, never skipped).

use sqlx::mysql::MySqlDatabaseError;

/// Error numbers of MySQL and MariaDB that a retry of the same statement with the same data
/// meets again: the row itself breaks a constraint or does not fit its column.
///
/// Deliberately a short list of data errors. Anything else (a lost connection, a lock wait
/// timeout, a deadlock, too many connections, and also a missing table or column, which an
/// operator fixes by migrating) is retried: dead-lettering on an error the message did not
/// cause would throw good orders away.
const DETERMINISTIC: &[u16] = &[
    1048, // ER_BAD_NULL_ERROR: column cannot be null
    1062, // ER_DUP_ENTRY
    1216, // ER_NO_REFERENCED_ROW (older servers)
    1217, // ER_ROW_IS_REFERENCED (older servers)
    1264, // ER_WARN_DATA_OUT_OF_RANGE
    1265, // WARN_DATA_TRUNCATED
    1292, // ER_TRUNCATED_WRONG_VALUE: incorrect datetime/number value
    1364, // ER_NO_DEFAULT_FOR_FIELD
    1365, // ER_DIVISION_BY_ZERO
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: incorrect string value
    1367, // ER_ILLEGAL_VALUE_FOR_TYPE
    1406, // ER_DATA_TOO_LONG
    1451, // ER_ROW_IS_REFERENCED_2: a foreign key refuses a delete or update
    1452, // ER_NO_REFERENCED_ROW_2: a foreign key refuses an insert or update
    1557, // ER_FOREIGN_DUPLICATE_KEY
    1586, // ER_DUP_ENTRY_WITH_KEY_NAME
    1690, // ER_DATA_OUT_OF_RANGE: BIGINT UNSIGNED value is out of range
    3140, // ER_INVALID_JSON_TEXT (MySQL)
    3819, // ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    4025, // ER_CONSTRAINT_FAILED: a CHECK constraint (MariaDB)
];

/// The server's refusal, when `err` is one a retry would meet again: `"<number>: <message>"`,
/// for the dead-letter reason. `None` for every failure worth retrying.
pub fn deterministic(err: &sqlx::Error) -> Option<String> {
    let database = err.as_database_error()?;
    let mysql = database.try_downcast_ref::<MySqlDatabaseError>()?;
    is_deterministic(mysql.number()).then(|| format!("{}: {}", mysql.number(), mysql.message()))
}

/// Whether MySQL error `number` fails the same way on every retry.
pub fn is_deterministic(number: u16) -> bool {
    DETERMINISTIC.contains(&number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_and_data_errors_are_deterministic_and_the_rest_is_retried() {
        for number in [1062, 1452, 3819, 4025, 1406, 1366, 1264] {
            assert!(is_deterministic(number), "{number}");
        }
        // Lock wait timeout, deadlock, gone away, lost connection, too many connections,
        // unknown table, unknown column, read-only server.
        for number in [1205, 1213, 2006, 2013, 1040, 1146, 1054, 1290] {
            assert!(!is_deterministic(number), "{number}");
        }
    }

    #[test]
    fn errors_that_are_not_the_servers_are_retried() {
        assert_eq!(deterministic(&sqlx::Error::PoolTimedOut), None);
        assert_eq!(deterministic(&sqlx::Error::RowNotFound), None);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(deterministic(&sqlx::Error::Io(io)), None);
    }
}
