//! Server-side printing: the `Table` columns and cells kubectl shows for each resource.

use serde_json::Value;

use crate::ResourceInfo;

/// One column of a `Table` (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string", "integer", "number", "boolean" or "date".
    pub type_: &'static str,
    /// "name" for the NAME column, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: i32,
}

/// The columns of resource `info`.
pub fn columns(info: &ResourceInfo) -> Vec<Column> {
    let _ = info;
    todo!()
}

/// The cells of one object, matching [`columns`]; `now_unix` is "now" in Unix seconds, for
/// ages ("5m", "2d3h").
pub fn cells(info: &ResourceInfo, obj: &Value, now_unix: i64) -> Vec<Value> {
    let _ = (info, obj, now_unix);
    todo!()
}
