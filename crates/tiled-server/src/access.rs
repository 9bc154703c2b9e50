//! Tag-based access control (upstream's `TagBasedAccessPolicy`).
//!
//! A node carries access tags. The policy's tag table says, per tag, which
//! principals hold it and with which scopes, who owns it (may put it on or
//! take it off nodes), and which tags are public (everyone may read what
//! carries them). Every principal also holds its own principal tag,
//! `user:{id}` (and `service:{uuid}` for services), with all scopes: new
//! nodes get it when their creator names no tags.
//!
//! - **Visibility.** A caller sees a node when one of its tags grants them
//!   `read:metadata`, or when it has no tags (it then inherits its parent's
//!   visibility). What a caller cannot see does not exist for them: the
//!   filter is part of every search (so the catalog applies it in SQL, and
//!   counts and pages agree), and a hidden node answers 404 on every route.
//! - **Scopes.** On a visible node, a request may use the scopes its
//!   credentials carry *and* the node's tags grant (the nearest tagged
//!   node on its path decides); lacking one gives 403.
//! - **Admins** (scope `admin:apikeys`) see and may do everything, and
//!   alone may apply the `public` tag or an empty tag list.
//! - **API keys restricted to tags** (`access_tags` at creation) reach only
//!   nodes carrying one of those tags, and may apply only those.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiled_adapters::{
    AdapterError, ContainerAdapter, Distinct, DistinctRequest, Node, NodeData, SearchPage, SortKey,
};
use tiled_model::Query;

use crate::auth::Access;
use crate::error::ApiError;

/// Every scope upstream knows (`access_control/scopes.py` `ALL_SCOPES`).
pub const ALL_SCOPES: &[&str] = &[
    "read:metadata",
    "read:data",
    "write:metadata",
    "write:data",
    "delete:revision",
    "delete:node",
    "create:node",
    "register",
    "metrics",
    "create:apikeys",
    "revoke:apikeys",
    "admin:apikeys",
    "read:principals",
    "write:principals",
    "read:webhooks",
    "write:webhooks",
];

/// [`ALL_SCOPES`] as a set (a policy's default `scopes`).
pub fn all_scopes() -> BTreeSet<String> {
    ALL_SCOPES.iter().map(|s| s.to_string()).collect()
}

/// The scopes a public tag grants to everyone.
pub const PUBLIC_SCOPES: &[&str] = &["read:metadata", "read:data"];

/// The scopes that concern nodes: these are what a node's tags can grant
/// or withhold. Others (API keys, principals, metrics) are not per node.
pub const NODE_SCOPES: &[&str] = &[
    "read:metadata",
    "read:data",
    "write:metadata",
    "write:data",
    "delete:revision",
    "delete:node",
    "create:node",
    "register",
];

/// Scopes a non-admin may not take away from themselves by retagging.
const UNREMOVABLE_SCOPES: &[&str] = &["read:metadata", "write:metadata"];

/// The tag everyone can read; only admins apply or remove it.
pub const PUBLIC_TAG: &str = "public";

/// Tag definitions, compiled: who holds each tag with which scopes, who
/// owns it, and which tags are public.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagTable {
    /// Tag → principal name (identity id, or service uuid) → scopes.
    pub grants: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Tag → the principals who may apply it to nodes or remove it.
    pub owners: BTreeMap<String, BTreeSet<String>>,
    /// Tags whose nodes everyone may read.
    pub public: BTreeSet<String>,
}

impl TagTable {
    /// Whether `tag` is defined (granted, owned or public).
    pub fn is_defined(&self, tag: &str) -> bool {
        tag.eq_ignore_ascii_case(PUBLIC_TAG)
            || self.grants.contains_key(tag)
            || self.owners.contains_key(tag)
            || self.public.contains(tag)
    }

    /// Whether `who` owns `tag`.
    pub fn is_owner(&self, tag: &str, who: &str) -> bool {
        self.owners.get(tag).is_some_and(|o| o.contains(who))
    }
}

type Loader = Box<dyn Fn() -> Result<TagTable, String> + Send + Sync>;

/// Where the tag table comes from.
pub enum TagSource {
    /// Defined once (inline in the configuration).
    Fixed(Arc<TagTable>),
    /// Read again at most every `ttl` (the catalog's tag tables, a tag
    /// file): edits apply without a restart. A failed read keeps the last
    /// good table (an empty one before the first), and is logged.
    Live {
        load: Loader,
        ttl: Duration,
        cache: Mutex<Option<(Instant, Arc<TagTable>)>>,
    },
}

impl std::fmt::Debug for TagSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagSource::Fixed(t) => f.debug_tuple("Fixed").field(t).finish(),
            TagSource::Live { ttl, .. } => f.debug_struct("Live").field("ttl", ttl).finish(),
        }
    }
}

impl TagSource {
    /// A source read by `load`, cached for `ttl`, starting from `first`
    /// (what `load` returned at start-up, so it is not read twice).
    pub fn live(
        first: TagTable,
        load: impl Fn() -> Result<TagTable, String> + Send + Sync + 'static,
        ttl: Duration,
    ) -> Self {
        TagSource::Live {
            load: Box::new(load),
            ttl,
            cache: Mutex::new(Some((Instant::now(), Arc::new(first)))),
        }
    }

    /// The current table.
    pub fn table(&self) -> Arc<TagTable> {
        match self {
            TagSource::Fixed(t) => t.clone(),
            TagSource::Live { load, ttl, cache } => {
                let mut guard = cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((at, table)) = guard.as_ref()
                    && at.elapsed() < *ttl
                {
                    return table.clone();
                }
                let table = match load() {
                    Ok(t) => Arc::new(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the access tag definitions; keeping the previous ones");
                        guard.as_ref().map(|(_, t)| t.clone()).unwrap_or_default()
                    }
                };
                *guard = Some((Instant::now(), table.clone()));
                table
            }
        }
    }
}

/// The policy.
#[derive(Debug)]
pub struct TagPolicy {
    /// The provider whose identity names users in the tag table.
    pub provider: String,
    /// The tag definitions.
    pub source: TagSource,
    /// The scopes the policy may grant at all (upstream's `scopes` arg;
    /// default every scope).
    pub scopes: BTreeSet<String>,
}

impl TagPolicy {
    /// A policy over fixed definitions granting up to every scope.
    pub fn fixed(provider: impl Into<String>, table: TagTable) -> Self {
        TagPolicy {
            provider: provider.into(),
            source: TagSource::Fixed(Arc::new(table)),
            scopes: all_scopes(),
        }
    }

    /// What a caller holds: `who` is the principal's name at the policy's
    /// provider (`None`: anonymous), `service` whether it is a service,
    /// `key_tags` the tags its API key is restricted to.
    pub fn caller_tags(
        &self,
        who: Option<&str>,
        service: bool,
        key_tags: Option<&[String]>,
    ) -> CallerTags {
        let table = self.source.table();
        let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let public: BTreeSet<String> = PUBLIC_SCOPES.iter().map(|s| s.to_string()).collect();
        grants.insert(PUBLIC_TAG.into(), public.clone());
        for tag in &table.public {
            grants
                .entry(tag.clone())
                .or_default()
                .extend(public.clone());
        }
        if let Some(who) = who {
            for (tag, holders) in &table.grants {
                if let Some(scopes) = holders.get(who) {
                    grants
                        .entry(tag.clone())
                        .or_default()
                        .extend(scopes.iter().filter(|s| self.scopes.contains(*s)).cloned());
                }
            }
            let mut own = vec![format!("user:{who}")];
            if service {
                own.push(format!("service:{who}"));
            }
            for tag in own {
                grants.insert(tag, self.scopes.clone());
            }
        }
        if let Some(allowed) = key_tags {
            grants.retain(|tag, _| allowed.contains(tag));
        }
        grants.retain(|_, scopes| !scopes.is_empty());
        CallerTags {
            who: who.map(str::to_string),
            service,
            key_tags: key_tags.map(<[String]>::to_vec),
            grants,
            table,
        }
    }
}

/// What one caller holds under the policy.
#[derive(Debug, Clone)]
pub struct CallerTags {
    /// The caller's name at the policy's provider (`None`: anonymous).
    pub who: Option<String>,
    pub service: bool,
    /// The tags the caller's API key is restricted to.
    pub key_tags: Option<Vec<String>>,
    /// Tag → the scopes it grants this caller.
    pub grants: BTreeMap<String, BTreeSet<String>>,
    /// The definitions these grants come from.
    pub table: Arc<TagTable>,
}

impl CallerTags {
    /// The tags whose nodes this caller may see.
    pub fn readable(&self) -> Vec<String> {
        self.grants
            .iter()
            .filter(|(_, s)| s.contains("read:metadata"))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The scopes a node with `tags` grants this caller.
    pub fn scopes_for(&self, tags: &[String]) -> BTreeSet<String> {
        tags.iter()
            .filter_map(|t| self.grants.get(t))
            .flatten()
            .cloned()
            .collect()
    }

    /// This caller's own principal tag.
    pub fn own_tag(&self) -> Option<String> {
        self.who.as_ref().map(|w| format!("user:{w}"))
    }
}

/// What a caller may see.
#[derive(Debug, Clone)]
pub enum Visibility {
    /// Everything, and no policy applies (no policy, or the single-user
    /// key).
    All,
    /// Everything, as an admin under a policy.
    Admin(Arc<CallerTags>),
    /// What a policy shows this caller.
    Tags(Arc<CallerTags>),
}

/// A container whose children are filtered by access tags.
/// It lives for one request, and remembers the children it was asked for:
/// a request first walks its path for the node scopes
/// ([`scopes_on_path`]) and then resolves it again in its handler, and the
/// second walk should not query the catalog again.
struct Filtered {
    inner: Arc<dyn ContainerAdapter>,
    tags: Arc<Vec<String>>,
    looked_up: Mutex<HashMap<String, Option<Node>>>,
}

/// At most this many children remembered per container and request.
const LOOKUPS_KEPT: usize = 16;

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
        SearchPage {
            entries: page
                .entries
                .into_iter()
                .map(|(k, n)| {
                    let n = view_readable(&n, &self.tags);
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
        let mut looked_up = self.looked_up.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = looked_up.get(key) {
            return Ok(found.clone());
        }
        let found = self
            .inner
            .get(key)?
            .filter(|n| self.visible(n))
            .map(|n| view_readable(&n, &self.tags));
        if looked_up.len() < LOOKUPS_KEPT {
            looked_up.insert(key.to_string(), found.clone());
        }
        Ok(found)
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

/// What `access` may see under `policy` (`None`: no policy). `principal`
/// gives the caller's name at the policy's provider and whether it is a
/// service (only called for principals).
pub fn visibility(
    policy: Option<&TagPolicy>,
    access: &Access,
    principal: impl FnOnce() -> Option<(String, bool)>,
) -> Visibility {
    let Some(policy) = policy else {
        return Visibility::All;
    };
    match access {
        Access::Full => Visibility::All,
        Access::User(c) => {
            let (who, service) = principal().unzip();
            let tags = Arc::new(policy.caller_tags(
                who.as_deref(),
                service.unwrap_or(false),
                c.access_tags.as_deref(),
            ));
            if c.scopes.iter().any(|s| s == "admin:apikeys") {
                Visibility::Admin(tags)
            } else {
                Visibility::Tags(tags)
            }
        }
        Access::Read => Visibility::Tags(Arc::new(policy.caller_tags(None, false, None))),
    }
}

/// `node` as `visibility` shows it (containers filter their children).
pub fn view(node: &Node, visibility: &Visibility) -> Node {
    let Visibility::Tags(caller) = visibility else {
        return node.clone();
    };
    view_readable(node, &Arc::new(caller.readable()))
}

fn view_readable(node: &Node, readable: &Arc<Vec<String>>) -> Node {
    match &node.data {
        NodeData::Container(c) => {
            let mut n = node.clone();
            n.data = NodeData::Container(Arc::new(Filtered {
                inner: c.clone(),
                tags: readable.clone(),
                looked_up: Mutex::new(HashMap::new()),
            }));
            n
        }
        _ => node.clone(),
    }
}

/// The node scopes the tags along `path` grant the caller: those of the
/// deepest tagged node on it, the root included (`None`: no node on the
/// path is tagged, or
/// no policy restricts this caller). Walks `root` as the caller sees it;
/// stops where the path does not lead on (the route then answers 404).
///
/// # Errors
/// The tree's errors.
pub fn scopes_on_path(
    root: &Node,
    path: &[String],
    visibility: &Visibility,
) -> Result<Option<BTreeSet<String>>, AdapterError> {
    let Visibility::Tags(caller) = visibility else {
        return Ok(None);
    };
    // The root's own tags (a catalog's `top_level_access_tags`) count too.
    let mut allowed = (!root.access_tags.is_empty()).then(|| caller.scopes_for(&root.access_tags));
    let mut node = root.clone();
    for key in path {
        let NodeData::Container(c) = &node.data else {
            break;
        };
        let Some(child) = c.get(key)? else {
            break;
        };
        if !child.access_tags.is_empty() {
            allowed = Some(caller.scopes_for(&child.access_tags));
        }
        node = child;
    }
    Ok(allowed)
}

/// Upstream's refusal of a tag edit.
fn refuse(reason: impl std::fmt::Display) -> ApiError {
    ApiError::Forbidden(format!(
        "Access policy rejects the provided access tags.\n{reason}"
    ))
}

/// Sorted, deduplicated, `public` in lower case.
fn normalize(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .map(|t| {
            if t.eq_ignore_ascii_case(PUBLIC_TAG) {
                PUBLIC_TAG.to_string()
            } else {
                t.clone()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The tags a new node gets (upstream's `init_node`): the ones asked for,
/// checked, or else the creator's principal tag. `None` when no policy
/// applies (then what was asked is kept as is).
///
/// # Errors
/// 403 naming the rule a request breaks.
pub fn tags_for_new_node(
    visibility: &Visibility,
    asked: Option<&[String]>,
) -> Result<Option<Vec<String>>, ApiError> {
    let (caller, admin) = match visibility {
        Visibility::All => return Ok(asked.map(normalize).filter(|t| !t.is_empty())),
        Visibility::Admin(c) => (c, true),
        Visibility::Tags(c) => (c, false),
    };
    let Some(asked) = asked else {
        let own = if caller.service {
            caller.who.as_ref().map(|w| format!("service:{w}"))
        } else {
            caller.own_tag()
        };
        let Some(own) = own else {
            return Err(refuse(
                "Cannot create a node without an identity to own it.",
            ));
        };
        if let Some(key_tags) = &caller.key_tags
            && !key_tags.contains(&own)
        {
            return Err(refuse(format!(
                "Cannot init node as user-tagged node.\nCurrent API key does not permit \
                 action on user-owned nodes.\nPlease provide only tags allowed by this API \
                 key: {key_tags:?}"
            )));
        }
        return Ok(Some(vec![own]));
    };
    let tags = normalize(asked);
    check_applied(caller, admin, &tags, &[])?;
    Ok(Some(tags))
}

/// The tags an existing node gets (upstream's `modify_node`): `current`
/// replaced by `asked`, checked. `None` when no policy applies (upstream
/// then ignores tag edits).
///
/// # Errors
/// 403 naming the rule a request breaks.
pub fn tags_for_existing_node(
    visibility: &Visibility,
    current: &[String],
    asked: &[String],
) -> Result<Option<Vec<String>>, ApiError> {
    let (caller, admin) = match visibility {
        Visibility::All => return Ok(None),
        Visibility::Admin(c) => (c, true),
        Visibility::Tags(c) => (c, false),
    };
    let current = normalize(current);
    let tags = normalize(asked);
    if tags == current {
        return Ok(Some(current));
    }
    check_applied(caller, admin, &tags, &current)?;
    for tag in current.iter().filter(|t| !tags.contains(t)) {
        // A principal owns its own principal tag.
        let own = caller.who.as_ref().is_some_and(|w| {
            *tag == format!("user:{w}") || (caller.service && *tag == format!("service:{w}"))
        });
        check_tag_change(caller, tag, Change::Remove, own || admin)?;
    }
    Ok(Some(tags))
}

/// Putting a tag on a node, or taking it off.
#[derive(Clone, Copy)]
enum Change {
    Apply,
    Remove,
}

/// Upstream's checks on one tag put on or taken off a node: an API key
/// restricted to tags may change only those; unless `exempt` (an admin, a
/// tag already there, the caller's own principal tag) only admins change
/// `public`, and the tag must be defined and owned by the caller.
fn check_tag_change(
    caller: &CallerTags,
    tag: &str,
    change: Change,
    exempt: bool,
) -> Result<(), ApiError> {
    let (verb, prep) = match change {
        Change::Apply => ("apply", "to"),
        Change::Remove => ("remove", "from"),
    };
    if let Some(key_tags) = &caller.key_tags
        && !key_tags.iter().any(|k| k == tag)
    {
        return Err(refuse(format!(
            "Cannot {verb} tag {prep} node: API key is restricted to access tags: {key_tags:?}."
        )));
    }
    if exempt {
        return Ok(());
    }
    if tag == PUBLIC_TAG {
        return Err(refuse(format!(
            "Cannot {verb} 'public' tag {prep} node: only Tiled admins can {verb} the 'public' tag."
        )));
    }
    if !caller.table.is_defined(tag) {
        return Err(refuse(format!(
            "Cannot {verb} tag {prep} node: tag={tag:?} is not defined"
        )));
    }
    let who = caller.who.as_deref().unwrap_or_default();
    if !caller.table.is_owner(tag, who) {
        return Err(refuse(format!(
            "Cannot {verb} tag {prep} node: user={who:?} is not an owner of tag={tag:?}"
        )));
    }
    Ok(())
}

/// The checks on tags being applied (`tags`, of which `already` are on the
/// node): shared by creation and modification.
fn check_applied(
    caller: &CallerTags,
    admin: bool,
    tags: &[String],
    already: &[String],
) -> Result<(), ApiError> {
    if tags.is_empty() && !admin {
        return Err(refuse(
            "Cannot apply empty tag list to node: only Tiled admins can apply an empty tag list.",
        ));
    }
    if tags
        .iter()
        .any(|t| t.starts_with("user:") || t.starts_with("service:"))
    {
        return Err(refuse(format!(
            "Cannot manually tag node with user tags.\nReceived access_tags={tags:?}"
        )));
    }
    for tag in tags {
        check_tag_change(caller, tag, Change::Apply, already.contains(tag) || admin)?;
    }
    if !admin {
        let granted = caller.scopes_for(tags);
        if !UNREMOVABLE_SCOPES.iter().all(|s| granted.contains(*s)) {
            return Err(refuse(format!(
                "Cannot give a node these tags: they would not grant you the scopes \
                 {UNREMOVABLE_SCOPES:?} on it.\nThe new access_tags would be: {tags:?}"
            )));
        }
    }
    Ok(())
}

/// Compile tag definitions in upstream's tag-file format (the YAML the
/// upstream `AccessTagsCompiler` reads, as JSON):
///
/// ```yaml
/// roles:
///   facility_user: {scopes: [read:metadata, read:data]}
/// tags:
///   proposal_123:
///     users:
///       - {name: alice, role: facility_user}
///       - {name: bob, scopes: [read:metadata, read:data, write:metadata]}
///     auto_tags: [{name: public}]     # inherit another tag's users
/// tag_owners:
///   proposal_123: {users: [{name: alice}]}
/// ```
///
/// A tag listing `public` (directly or through its `auto_tags`) is public.
/// `groups` need a directory of groups, which this server has not: they
/// are refused with a message naming the tag.
///
/// # Errors
/// A message naming the offending entry.
pub fn compile_tag_definitions(
    defs: &serde_json::Value,
    scopes: &BTreeSet<String>,
) -> Result<TagTable, String> {
    use serde_json::Value;
    let obj = defs
        .as_object()
        .ok_or("tag definitions must be a mapping with `tags`")?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "roles" | "tags" | "tag_owners") {
            return Err(format!(
                "unknown key {key:?} (expected roles, tags, tag_owners)"
            ));
        }
    }
    let empty = serde_json::Map::new();
    let map_of = |key: &str| -> Result<&serde_json::Map<String, Value>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(&empty),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(format!("{key} must be a mapping")),
        }
    };
    let scope_set = |v: Option<&Value>, at: &str| -> Result<BTreeSet<String>, String> {
        let list = v
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{at}: scopes must be a list"))?;
        let mut out = BTreeSet::new();
        for s in list {
            let s = s
                .as_str()
                .ok_or_else(|| format!("{at}: scopes must be strings"))?;
            if !scopes.contains(s) {
                return Err(format!("{at}: {s:?} is not a valid scope"));
            }
            out.insert(s.to_string());
        }
        if out.is_empty() {
            return Err(format!("{at}: scopes must not be empty"));
        }
        Ok(out)
    };
    let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, role) in map_of("roles")? {
        roles.insert(
            name.clone(),
            scope_set(role.get("scopes"), &format!("roles.{name}"))?,
        );
    }
    let tags = obj
        .get("tags")
        .and_then(Value::as_object)
        .ok_or("`tags` is required and must be a mapping")?;
    // Direct grants and auto_tags edges first; then the closure.
    let mut direct: BTreeMap<String, Grants> = BTreeMap::new();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tag, def) in tags {
        let at = format!("tags.{tag}");
        if tag.eq_ignore_ascii_case(PUBLIC_TAG) {
            return Err(format!("{at}: the 'public' tag cannot be redefined"));
        }
        let def_value = def;
        let def = match def {
            Value::Null => &empty,
            Value::Object(m) => m,
            _ => return Err(format!("{at} must be a mapping")),
        };
        for key in def.keys() {
            match key.as_str() {
                "users" | "auto_tags" => {}
                "groups" => {
                    return Err(format!(
                        "{at}.groups: groups need a group directory, which tiled-rs does not \
                         read; list the users instead"
                    ));
                }
                other => return Err(format!("{at}: unknown key {other:?}")),
            }
        }
        let users = direct.entry(tag.clone()).or_default();
        for (i, (name, user)) in named_entries(def_value, "users", &at)?
            .into_iter()
            .enumerate()
        {
            let at = format!("{at}.users[{i}]");
            let granted = match (user.get("scopes"), user.get("role")) {
                (Some(_), Some(_)) => {
                    return Err(format!("{at}: give either scopes or role, not both"));
                }
                (None, None) => return Err(format!("{at}: give scopes or a role")),
                (Some(s), None) => scope_set(Some(s), &at)?,
                (None, Some(r)) => {
                    let r = r.as_str().unwrap_or_default();
                    roles
                        .get(r)
                        .cloned()
                        .ok_or_else(|| format!("{at}: role {r:?} is not defined"))?
                }
            };
            users.entry(name.to_string()).or_default().extend(granted);
        }
        let mut next = Vec::new();
        for (i, (name, _)) in named_entries(def_value, "auto_tags", &at)?
            .into_iter()
            .enumerate()
        {
            if !name.eq_ignore_ascii_case(PUBLIC_TAG) && !tags.contains_key(name) {
                return Err(format!(
                    "{at}.auto_tags[{i}]: tag {name:?} does not have a definition"
                ));
            }
            next.push(name.to_string());
        }
        edges.insert(tag.clone(), next);
    }
    let mut table = TagTable::default();
    for tag in tags.keys() {
        let (users, public) = closure(tag, &direct, &edges, &mut Vec::new())?;
        if public {
            table.public.insert(tag.clone());
        }
        table.grants.insert(tag.clone(), users);
    }
    for (tag, def) in map_of("tag_owners")? {
        let at = format!("tag_owners.{tag}");
        if tag.starts_with("user:") || tag.starts_with("service:") {
            return Err(format!("{at}: principal tags cannot have owners"));
        }
        if def.get("groups").is_some() {
            return Err(format!(
                "{at}.groups: groups need a group directory, which tiled-rs does not read; \
                 list the users instead"
            ));
        }
        let owners = table.owners.entry(tag.clone()).or_default();
        for (name, _) in named_entries(def, "users", &at)? {
            owners.insert(name.to_string());
        }
    }
    Ok(table)
}

/// The entries of `def[key]` (a list of `{name, ...}` mappings) with their
/// names; `at` names the definition in errors.
fn named_entries<'a>(
    def: &'a serde_json::Value,
    key: &str,
    at: &str,
) -> Result<Vec<(&'a str, &'a serde_json::Value)>, String> {
    def.get(key)
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .get("name")
                .and_then(serde_json::Value::as_str)
                .map(|name| (name, entry))
                .ok_or_else(|| format!("{at}.{key}[{i}]: needs a name"))
        })
        .collect()
}

type Grants = BTreeMap<String, BTreeSet<String>>;

/// The users (with scopes) a tag grants through its own definition and
/// its `auto_tags`, and whether it is public. `path` holds the tags being
/// expanded, to refuse cycles; nesting is limited to 5 levels as upstream.
fn closure(
    tag: &str,
    direct: &BTreeMap<String, Grants>,
    edges: &BTreeMap<String, Vec<String>>,
    path: &mut Vec<String>,
) -> Result<(Grants, bool), String> {
    if tag.eq_ignore_ascii_case(PUBLIC_TAG) {
        return Ok((Grants::new(), true));
    }
    if let Some(at) = path.iter().position(|t| t == tag) {
        return Err(format!(
            "auto_tags form a cycle: {} -> {tag}",
            path[at..].join(" -> ")
        ));
    }
    if path.len() > 5 {
        return Err(format!(
            "tags.{}: auto_tags nest more than 5 levels",
            path[0]
        ));
    }
    path.push(tag.to_string());
    let mut users = direct.get(tag).cloned().unwrap_or_default();
    let mut public = false;
    for next in edges.get(tag).into_iter().flatten() {
        let (more, p) = closure(next, direct, edges, path)?;
        public |= p;
        for (user, scopes) in more {
            users.entry(user).or_default().extend(scopes);
        }
    }
    path.pop();
    Ok((users, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all() -> BTreeSet<String> {
        all_scopes()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn table() -> TagTable {
        compile_tag_definitions(
            &json!({
                "roles": {"reader": {"scopes": ["read:metadata", "read:data"]}},
                "tags": {
                    "a": {"users": [{"name": "alice", "scopes": ["read:metadata", "write:metadata"]}]},
                    "b": {"users": [{"name": "bob", "role": "reader"}], "auto_tags": [{"name": "a"}]},
                    "c": {"auto_tags": [{"name": "b"}, {"name": "a"}]},
                    "open": {"auto_tags": [{"name": "public"}]}
                },
                "tag_owners": {"a": {"users": [{"name": "alice"}]}}
            }),
            &all(),
        )
        .unwrap()
    }

    #[test]
    fn auto_tags_union_their_users_and_diamonds_are_not_cycles() {
        let t = table();
        assert_eq!(t.grants["b"]["bob"], set(&["read:metadata", "read:data"]));
        assert_eq!(
            t.grants["b"]["alice"],
            set(&["read:metadata", "write:metadata"])
        );
        // c reaches a twice (directly and through b): not a cycle.
        assert_eq!(t.grants["c"].len(), 2);
        assert!(t.public.contains("open") && !t.public.contains("a"));
        assert!(t.is_owner("a", "alice") && !t.is_owner("b", "alice"));
        assert!(t.is_defined("c") && t.is_defined("public") && !t.is_defined("zzz"));
    }

    #[test]
    fn bad_definitions_name_the_entry() {
        let bad = |v: serde_json::Value, words: &str| {
            let e = compile_tag_definitions(&v, &all()).unwrap_err();
            assert!(e.contains(words), "{e}");
        };
        bad(
            json!({"tags": {"x": {"auto_tags": [{"name": "y"}]}, "y": {"auto_tags": [{"name": "x"}]}}}),
            "cycle",
        );
        bad(
            json!({"tags": {"x": {"users": [{"name": "u", "role": "nope"}]}}}),
            "tags.x.users[0]",
        );
        bad(
            json!({"tags": {"x": {"users": [{"name": "u", "scopes": ["fly"]}]}}}),
            "\"fly\"",
        );
        bad(
            json!({"tags": {"x": {"users": [{"name": "u"}]}}}),
            "scopes or a role",
        );
        bad(
            json!({"tags": {"x": {"groups": [{"name": "g", "role": "r"}]}}}),
            "tags.x.groups",
        );
        bad(json!({"tags": {"public": {}}}), "cannot be redefined");
        bad(
            json!({"tags": {}, "tag_owners": {"user:bob": {}}}),
            "principal tags",
        );
        bad(json!({"roles": {}}), "`tags` is required");
    }

    #[test]
    fn callers_hold_their_tags_public_ones_and_their_own() {
        let policy = TagPolicy::fixed("toy", table());
        let bob = policy.caller_tags(Some("bob"), false, None);
        assert_eq!(bob.readable(), ["b", "c", "open", "public", "user:bob"]);
        assert_eq!(bob.scopes_for(&["open".into()]), set(PUBLIC_SCOPES));
        assert_eq!(bob.scopes_for(&["user:bob".into()]), all());
        let anonymous = policy.caller_tags(None, false, None);
        assert_eq!(anonymous.readable(), ["open", "public"]);
        let keyed = policy.caller_tags(Some("bob"), false, Some(&["b".to_string()]));
        assert_eq!(keyed.readable(), ["b"]);
        // A grant without read:metadata does not make a tag visible.
        let mut t = table();
        t.grants
            .entry("w".into())
            .or_default()
            .insert("bob".into(), set(&["write:data"]));
        let policy = TagPolicy::fixed("toy", t);
        assert!(
            !policy
                .caller_tags(Some("bob"), false, None)
                .readable()
                .contains(&"w".to_string())
        );
    }

    /// A container counting the lookups that reach it.
    struct Counting {
        inner: tiled_adapters::MemoryContainer,
        gets: std::sync::atomic::AtomicUsize,
    }

    impl ContainerAdapter for Counting {
        fn len(&self) -> Result<usize, AdapterError> {
            self.inner.len()
        }
        fn get(&self, key: &str) -> Result<Option<Node>, AdapterError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get(key)
        }
        fn search(
            &self,
            queries: &[Query],
            sort: &[SortKey],
            offset: usize,
            limit: usize,
        ) -> Result<SearchPage, AdapterError> {
            self.inner.search(queries, sort, offset, limit)
        }
        fn distinct(&self, request: &DistinctRequest<'_>) -> Result<Distinct, AdapterError> {
            self.inner.distinct(request)
        }
    }

    #[test]
    fn a_request_looks_each_child_up_once() {
        let mut child = Node::new(NodeData::Container(Arc::new(
            tiled_adapters::MemoryContainer::new([]),
        )));
        child.access_tags = vec!["b".into()];
        let counting = Arc::new(Counting {
            inner: tiled_adapters::MemoryContainer::new([("c".to_string(), child)]),
            gets: Default::default(),
        });
        let root = Node::new(NodeData::Container(counting.clone()));
        let policy = TagPolicy::fixed("toy", table());
        let bob = Visibility::Tags(Arc::new(policy.caller_tags(Some("bob"), false, None)));
        let seen = view(&root, &bob);
        let scopes = scopes_on_path(&seen, &["c".to_string()], &bob).unwrap();
        assert_eq!(scopes, Some(set(&["read:metadata", "read:data"])));
        // The handler resolves the same path again: no second lookup.
        let NodeData::Container(c) = &seen.data else {
            panic!("not a container")
        };
        assert!(c.get("c").unwrap().is_some());
        assert_eq!(counting.gets.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A hidden child is remembered as missing too.
        let anonymous = Visibility::Tags(Arc::new(policy.caller_tags(None, false, None)));
        let seen = view(&root, &anonymous);
        let NodeData::Container(c) = &seen.data else {
            panic!("not a container")
        };
        assert!(c.get("c").unwrap().is_none());
        assert!(c.get("c").unwrap().is_none());
        assert_eq!(counting.gets.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn retagging_rules() {
        let policy = TagPolicy::fixed("toy", table());
        let alice = Visibility::Tags(Arc::new(policy.caller_tags(Some("alice"), false, None)));
        let owned = vec!["user:alice".to_string()];
        // Her own tag may go; `a` (owned, grants write:metadata) may come.
        assert_eq!(
            tags_for_existing_node(&alice, &owned, &["a".into()]).unwrap(),
            Some(vec!["a".to_string()])
        );
        for (asked, words) in [
            (vec!["b"], "not an owner"),
            (vec!["zzz"], "not defined"),
            (vec!["a", "public"], "only Tiled admins"),
            (vec!["a", "user:alice"], "user tags"),
            (vec![], "empty tag list"),
        ] {
            let asked: Vec<String> = asked.into_iter().map(String::from).collect();
            let e = tags_for_existing_node(&alice, &owned, &asked).unwrap_err();
            assert!(e.to_string().contains(words), "{asked:?}: {e}");
        }
        // No policy: edits are ignored.
        assert_eq!(
            tags_for_existing_node(&Visibility::All, &owned, &[]).unwrap(),
            None
        );
        // Admins may do anything.
        let admin = Visibility::Admin(Arc::new(policy.caller_tags(Some("carol"), false, None)));
        assert_eq!(
            tags_for_existing_node(&admin, &owned, &["Public".into()]).unwrap(),
            Some(vec!["public".to_string()])
        );
        // New nodes: the creator's tag by default, refused for a key
        // restricted to other tags.
        assert_eq!(
            tags_for_new_node(&alice, None).unwrap(),
            Some(vec!["user:alice".to_string()])
        );
        let keyed = Visibility::Tags(Arc::new(policy.caller_tags(
            Some("alice"),
            false,
            Some(&["a".to_string()]),
        )));
        assert!(tags_for_new_node(&keyed, None).is_err());
        assert!(tags_for_new_node(&keyed, Some(&["a".into()])).is_ok());
    }
}
