//! Tag-based access control: a node carries access tags; a caller sees a
//! node when one of its tags is among the caller's, or when it has no
//! tags (it then inherits its parent's visibility). What a caller cannot
//! see does not exist for them: the filter is part of every search (so
//! the catalog applies it in SQL, and counts and pages agree), and a
//! hidden node answers 404 on every route.

use std::collections::HashMap;
use std::sync::Arc;

use tiled_adapters::{
    AdapterError, ContainerAdapter, Distinct, DistinctRequest, Node, NodeData, SearchPage, SortKey,
};
use tiled_model::Query;

use crate::auth::Access;

/// The policy: which users hold which tags.
#[derive(Debug, Clone, Default)]
pub struct TagPolicy {
    /// The provider whose identity names users in `tags`.
    pub provider: String,
    /// Tag → the users (identity ids at `provider`) who hold it.
    pub tags: HashMap<String, Vec<String>>,
    /// Tags everyone holds, anonymous callers included.
    pub public_tags: Vec<String>,
}

/// What a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Everything (admins, the single-user key).
    All,
    /// Nodes with one of these tags (or none).
    Tags(Vec<String>),
}

impl TagPolicy {
    /// The tags of a user (identity `id` at the policy's provider): the
    /// ones listing them, the public ones, and their own `user:{id}`.
    pub fn tags_of(&self, id: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = self.public_tags.clone();
        if let Some(id) = id {
            out.push(format!("user:{id}"));
            for (tag, users) in &self.tags {
                if users.iter().any(|u| u == id) {
                    out.push(tag.clone());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// `node` as `visibility` shows it (containers filter their children).
pub fn view(node: &Node, visibility: &Visibility) -> Node {
    let Visibility::Tags(tags) = visibility else {
        return node.clone();
    };
    match &node.data {
        NodeData::Container(c) => {
            let mut n = node.clone();
            n.data = NodeData::Container(Arc::new(Filtered {
                inner: c.clone(),
                tags: Arc::new(tags.clone()),
            }));
            n
        }
        _ => node.clone(),
    }
}

/// A container whose children are filtered by access tags.
struct Filtered {
    inner: Arc<dyn ContainerAdapter>,
    tags: Arc<Vec<String>>,
}

impl Filtered {
    fn visible(&self, node: &Node) -> bool {
        node.access_tags.is_empty() || node.access_tags.iter().any(|t| self.tags.contains(t))
    }

    fn with_filter(&self, queries: &[Query]) -> Vec<Query> {
        let mut q = queries.to_vec();
        q.push(Query::Visible {
            tags: self.tags.to_vec(),
        });
        q
    }

    fn wrap(&self, page: SearchPage) -> SearchPage {
        let visibility = Visibility::Tags(self.tags.to_vec());
        SearchPage {
            entries: page
                .entries
                .into_iter()
                .map(|(k, n)| {
                    let n = view(&n, &visibility);
                    (k, n)
                })
                .collect(),
            ..page
        }
    }
}

impl ContainerAdapter for Filtered {
    fn len(&self) -> Result<usize, AdapterError> {
        Ok(self.inner.search(&self.with_filter(&[]), &[], 0, 0)?.count)
    }

    fn get(&self, key: &str) -> Result<Option<Node>, AdapterError> {
        Ok(self
            .inner
            .get(key)?
            .filter(|n| self.visible(n))
            .map(|n| view(&n, &Visibility::Tags(self.tags.to_vec()))))
    }

    fn search(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        offset: usize,
        limit: usize,
    ) -> Result<SearchPage, AdapterError> {
        let page = self
            .inner
            .search(&self.with_filter(queries), sort, offset, limit)?;
        Ok(self.wrap(page))
    }

    fn search_after(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        cursor: u64,
        limit: usize,
    ) -> Result<SearchPage, AdapterError> {
        let page = self
            .inner
            .search_after(&self.with_filter(queries), sort, cursor, limit)?;
        Ok(self.wrap(page))
    }

    fn distinct(&self, request: &DistinctRequest<'_>) -> Result<Distinct, AdapterError> {
        let queries = self.with_filter(request.queries);
        self.inner.distinct(&DistinctRequest {
            queries: &queries,
            ..*request
        })
    }
}

/// What `access` may see under `policy` (`None`: no policy).
pub fn visibility(
    policy: Option<&TagPolicy>,
    access: &Access,
    identity: impl FnOnce() -> Option<String>,
) -> Visibility {
    let Some(policy) = policy else {
        return Visibility::All;
    };
    match access {
        Access::Full => Visibility::All,
        Access::User(c) if c.scopes.iter().any(|s| s == "admin:apikeys") => Visibility::All,
        Access::User(_) => Visibility::Tags(policy.tags_of(identity().as_deref())),
        Access::Read => Visibility::Tags(policy.tags_of(None)),
    }
}
