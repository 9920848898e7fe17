//! Who is calling, for handlers whose answer depends on it: searches and lists show only what
//! the caller may read. With authentication off there is no [`Caller`] and everything shows.

use axum::Extension;
use shipyard_auth::{Access, ResourceType, Visibility};

/// The gate's [`Access`], when authentication is on.
pub(crate) type Caller = Option<Extension<Access>>;

/// `items` without those of `kind` the caller may not read (`id` names each).
pub(crate) fn readable<T>(caller: &Caller, kind: ResourceType, items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
    shipyard_auth::gate::readable_only(caller.as_ref().map(|Extension(a)| a), kind, items, id)
}

/// Most results a filtered search looks through to fill one page (then it returns a short page
/// with the token to go on, as the protocol allows).
const MAX_SCANNED: usize = 50_000;

/// A page of a search with what the caller may not read left out, refilled from the following
/// pages (as MLflow's auth app does) so a page holds `max_results` whenever enough exist.
/// `fetch(max_results, page_token)` runs the store's search.
pub(crate) async fn readable_page<T, F, Fut>(
    caller: &Caller,
    kind: ResourceType,
    max_results: Option<i64>,
    page_token: Option<String>,
    id: impl Fn(&T) -> &str,
    mut fetch: F,
) -> shipyard_core::Result<shipyard_store::tracking::Page<T>>
where
    F: FnMut(Option<i64>, Option<String>) -> Fut,
    Fut: Future<Output = shipyard_core::Result<shipyard_store::tracking::Page<T>>>,
{
    let first = fetch(max_results, page_token).await?;
    let visibility = match caller {
        Some(Extension(access)) => access.readable(kind),
        None => Visibility::All,
    };
    if visibility == Visibility::All {
        return Ok(first);
    }
    // The page size asked for, or the store's default (the first page's length when more follow).
    let want = max_results.map_or(first.items.len(), |m| usize::try_from(m).unwrap_or(0)).max(1);
    let mut scanned = first.items.len();
    let mut items: Vec<T> = first.items.into_iter().filter(|item| visibility.allows(id(item))).collect();
    let mut next = first.next_page_token;
    while items.len() < want && scanned < MAX_SCANNED {
        let Some(token) = next.take() else { break };
        let missing = i64::try_from(want - items.len()).unwrap_or(i64::MAX);
        let page = fetch(Some(missing), Some(token)).await?;
        scanned += page.items.len();
        items.extend(page.items.into_iter().filter(|item| visibility.allows(id(item))));
        next = page.next_page_token;
    }
    Ok(shipyard_store::tracking::Page { items, next_page_token: next })
}

/// Who a change is recorded as made by: the logged-in user when authentication is on (what a
/// request says of itself is not believed then); else the name the request gives, or "api".
pub(crate) fn actor(caller: &Caller, given: Option<&str>) -> String {
    match caller {
        Some(Extension(access)) => access.principal.user.username.clone(),
        None => given.map(str::trim).filter(|g| !g.is_empty()).unwrap_or("api").to_owned(),
    }
}
