//! One page of secrets for the console: the filters (types, a name search, tags, a caller's
//! rule such as a console user's policy) run over names alone, then only the page's rows are
//! read in full, so a page costs the same for ten secrets or ten thousand plus one light scan.

use std::collections::HashMap;

use rotators::SecretType;
use sqlx::Row;

use super::rows::{SecretRow, SECRET_COLS, SECRET_FROM};
use super::secrets::tag_from_row;
use super::{SecretInfo, Store};
use crate::error::Result;
use crate::model::Tag;

/// Which secrets a page shows, in name order.
#[derive(Clone, Debug, Default)]
pub struct PageQuery {
    /// Only these types (every type when empty).
    pub types: Vec<SecretType>,
    /// Only names containing this text, ignoring ASCII case (every name when empty).
    pub search: String,
    /// Only secrets carrying all these tags.
    pub tags: Vec<Tag>,
    /// Secrets scheduled for deletion too.
    pub include_deleted: bool,
    /// Matching secrets skipped before the page.
    pub offset: usize,
    /// The most secrets on the page.
    pub limit: usize,
}

impl Store {
    /// The page of secrets `query` selects among those whose names `visible` accepts, and how
    /// many match in all.
    pub async fn list_page(
        &self,
        query: &PageQuery,
        visible: impl Fn(&str) -> bool,
    ) -> Result<(Vec<SecretInfo>, usize)> {
        let mut filter = String::new();
        if !query.include_deleted {
            filter.push_str(" AND s.planned_delete_at IS NULL");
        }
        for i in 0..query.tags.len() {
            filter.push_str(&format!(
                " AND s.id IN (SELECT secret_id FROM secret_tags WHERE tag_key = ${} AND tag_value = ${})",
                2 * i + 1,
                2 * i + 2
            ));
        }
        let sql = format!(
            "SELECT s.id, s.name, s.secret_type FROM secrets s WHERE 1 = 1{filter} ORDER BY s.name"
        );
        let mut names = sqlx::query(&sql);
        for tag in &query.tags {
            names = names.bind(&tag.tag_key).bind(&tag.tag_value);
        }
        let mut conn = self.pool.acquire().await?;
        let search = query.search.to_ascii_lowercase();
        let types: Vec<&str> = query.types.iter().map(|t| t.as_str()).collect();
        let mut matching = Vec::new();
        for row in names.fetch_all(&mut *conn).await? {
            let name: String = row.try_get("name")?;
            let ty: String = row.try_get("secret_type")?;
            if (!types.is_empty() && !types.contains(&ty.as_str()))
                || (!search.is_empty() && !name.to_ascii_lowercase().contains(&search))
                || !visible(&name)
            {
                continue;
            }
            matching.push(row.try_get::<i64, _>("id")?);
        }
        let total = matching.len();
        let page: Vec<String> = matching
            .iter()
            .skip(query.offset)
            .take(query.limit)
            .map(i64::to_string)
            .collect();
        if page.is_empty() {
            return Ok((vec![], total));
        }
        // Integers from the store itself: safe to write into the statement.
        let ids = page.join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {SECRET_COLS} FROM {SECRET_FROM} WHERE s.id IN ({ids}) ORDER BY s.name"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut tags: HashMap<i64, Vec<Tag>> = HashMap::new();
        for row in sqlx::query(&format!(
            "SELECT secret_id, tag_key, tag_value FROM secret_tags WHERE secret_id IN ({ids}) \
             ORDER BY secret_id, tag_key"
        ))
        .fetch_all(&mut *conn)
        .await?
        {
            tags.entry(row.try_get("secret_id")?)
                .or_default()
                .push(tag_from_row(&row)?);
        }
        let infos = rows
            .iter()
            .map(|row| {
                let row = SecretRow::from_row(row)?;
                let tags = tags.remove(&row.id).unwrap_or_default();
                Ok(row.info(tags))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((infos, total))
    }
}
