//! The few things the shared store logic needs from a database connection.
//!
//! Every store operation is written once, against [`Conn`], in SQL that both backends accept:
//! `?N` placeholders, integers for times (ms since the epoch) and flags, text for ids and JSON.
//! A backend may rewrite statements before it prepares them; PostgreSQL turns `?N` into `$N`,
//! drops SQLite's `INDEXED BY` hints and turns the `/*lock*/` and `/*skip locked*/` markers (plain
//! comments to SQLite, whose writer already holds the database lock) into row locks. Values cross
//! the boundary as [`Value`]s, so neither backend's types leak into the logic.

use crate::StoreError;

/// The database behind a connection, where the shared logic must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// One file, one writer at a time.
    Sqlite,
    /// Many nodes writing at once.
    Postgres,
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// Any integer (flags are 0 or 1).
    Int(i64),
    /// Text: ids, states, JSON.
    Text(String),
}

/// One result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    /// Column `index` as `T`.
    pub(crate) fn get<T: FromValue>(&self, index: usize) -> Result<T, StoreError> {
        let value = self
            .0
            .get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {index}")))?;
        T::from_value(value)
    }
}

/// A connection: statements run one at a time, each prepared once and cached.
pub(crate) trait Conn: Send {
    /// Which database this is.
    fn dialect(&self) -> Dialect;
    /// Runs a statement that returns no rows; returns how many rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Runs a query and returns all its rows.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// Begins a batch's transaction and returns the batch's time (ms since the epoch): on
    /// SQLite this machine's clock, on PostgreSQL the server's, so that the leases one node
    /// writes and another node's reaper reads are on one clock. One round trip on PostgreSQL.
    fn begin(&self) -> Result<i64, StoreError>;
    /// Ends the savepoint `op` of the change before (which succeeded) and opens a fresh one for
    /// the next change of a batch. One round trip on PostgreSQL, where the two go in one
    /// message.
    fn next_savepoint(&self) -> Result<(), StoreError> {
        self.execute("RELEASE op", &[])?;
        self.execute("SAVEPOINT op", &[])?;
        Ok(())
    }
    /// Whether the connection is gone for good (the server closed it); a broken connection is
    /// replaced, not reused.
    fn is_broken(&self) -> bool {
        false
    }
}

impl dyn Conn + '_ {
    /// The first row mapped by `f`, or `None` when there is none.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query(sql, params)?.first().map(f).transpose()
    }

    /// The first row mapped by `f`; no row is an error.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::permanent("the query returned no row", None))
    }

    /// Every row mapped by `f`.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params)?.iter().map(f).collect()
    }
}

/// Turns a Rust value into a [`Value`] for binding.
pub(crate) trait ToValue {
    /// The value to bind.
    fn to_value(&self) -> Value;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_to_value!(i32, u32, i64);

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

/// Reads a Rust value out of a [`Value`].
pub(crate) trait FromValue: Sized {
    /// The value, or why it cannot be read as `Self`.
    fn from_value(value: &Value) -> Result<Self, StoreError>;
}

fn mismatch(want: &str, value: &Value) -> StoreError {
    StoreError::Corrupt(format!("expected {want}, found {value:?}"))
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Int(n) => Ok(*n != 0),
            other => Err(mismatch("a flag", other)),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self, StoreError> {
                match value {
                    Value::Int(n) => <$t>::try_from(*n).map_err(|_| mismatch(stringify!($t), value)),
                    other => Err(mismatch(stringify!($t), other)),
                }
            }
        }
    )*};
}
int_from_value!(i32, u32, i64, u64);

/// Binds values for a statement: `params![id, attempt]`.
macro_rules! params {
    () => {
        &[][..]
    };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::sql::conn::ToValue::to_value(&$value)),+][..]
    };
}
pub(crate) use params;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        assert_eq!(Some(3u32).to_value(), Value::Int(3));
        assert_eq!(None::<i64>.to_value(), Value::Null);
        assert_eq!(true.to_value(), Value::Int(1));
        assert_eq!("a".to_value(), Value::Text("a".into()));
        let row = Row(vec![Value::Int(7), Value::Null, Value::Text("x".into())]);
        assert_eq!(row.get::<u32>(0).expect("u32"), 7);
        assert_eq!(row.get::<Option<i64>>(1).expect("null"), None);
        assert_eq!(row.get::<String>(2).expect("text"), "x");
        assert!(row.get::<String>(0).is_err(), "an int is not text");
        assert!(row.get::<u32>(3).is_err(), "no such column");
        assert!(
            Row(vec![Value::Int(-1)]).get::<u32>(0).is_err(),
            "out of range"
        );
    }
}
