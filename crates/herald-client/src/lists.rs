//! The suppression list (`/v1/suppressions`) and the webhook delivery log
//! (`GET /v1/webhooks/deliveries`): a page at a time, or every entry as a
//! stream that follows the cursors.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::Stream;
use herald_api::{
    AddResults, AddSuppressions, DeliveryQuery, Suppression, SuppressionPage, SuppressionQuery,
    WebhookDelivery, WebhookDeliveryPage,
};
use hyper::Method;

use crate::{Client, Error, encode};

impl Client {
    /// `GET /v1/suppressions`: one page of the list, newest first.
    pub async fn suppression_page(
        &self,
        query: &SuppressionQuery,
    ) -> Result<SuppressionPage, Error> {
        let path = with_query("/v1/suppressions", &query.to_query_string());
        self.inner.call(Method::GET, &path, None, None, true).await
    }

    /// Every entry `query` selects, newest first, following the cursors
    /// page after page (pages of `query.limit`). The stream ends after the
    /// last page, or after the first error.
    pub fn suppressions(
        &self,
        query: SuppressionQuery,
    ) -> impl Stream<Item = Result<Suppression, Error>> + '_ {
        let first = query.cursor.clone();
        follow(first, move |cursor| {
            let query = SuppressionQuery {
                cursor,
                ..query.clone()
            };
            async move {
                let page = self.suppression_page(&query).await?;
                Ok((page.suppressions, page.next_cursor))
            }
        })
    }

    /// `GET /v1/suppressions/{address}`: the entry of one address
    /// ([`Error::Api`] with status 404 when it is not on the list).
    pub async fn suppression(&self, address: &str) -> Result<Suppression, Error> {
        let path = format!("/v1/suppressions/{}", encode(address));
        self.inner.call(Method::GET, &path, None, None, true).await
    }

    /// `POST /v1/suppressions`: puts addresses on the list; one result per
    /// address, in order (an address already there is left as it was, so
    /// the request is safe to repeat).
    pub async fn add_suppressions(&self, add: &AddSuppressions) -> Result<AddResults, Error> {
        let bytes = serde_json::to_vec(add).map_err(|e| Error::Invalid(e.to_string()))?;
        self.inner
            .call(Method::POST, "/v1/suppressions", Some(bytes), None, true)
            .await
    }

    /// `DELETE /v1/suppressions/{address}`: takes an address off the list
    /// and answers the entry removed ([`Error::Api`] with status 404 when
    /// it was not on it).
    pub async fn remove_suppression(&self, address: &str) -> Result<Suppression, Error> {
        let path = format!("/v1/suppressions/{}", encode(address));
        self.inner
            .call(Method::DELETE, &path, None, None, true)
            .await
    }

    /// `GET /v1/webhooks/deliveries`: one page of webhook delivery tries,
    /// newest first.
    pub async fn webhook_delivery_page(
        &self,
        query: &DeliveryQuery,
    ) -> Result<WebhookDeliveryPage, Error> {
        let path = with_query("/v1/webhooks/deliveries", &query.to_query_string());
        self.inner.call(Method::GET, &path, None, None, true).await
    }

    /// Every webhook delivery try, newest first, following the cursors.
    /// The stream ends after the last page, or after the first error.
    pub fn webhook_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> impl Stream<Item = Result<WebhookDelivery, Error>> + '_ {
        let first = query.cursor.clone();
        follow(first, move |cursor| {
            let query = DeliveryQuery {
                cursor,
                ..query.clone()
            };
            async move {
                let page = self.webhook_delivery_page(&query).await?;
                Ok((page.deliveries, page.next_cursor))
            }
        })
    }
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Where a [`follow`] stream stands: the entries read and not yet handed
/// out, and the cursor of the next page (`None` after the last).
struct Pages<T, F> {
    next: Option<Option<String>>,
    buffered: VecDeque<T>,
    fetch: F,
}

/// The entries of page after page: `fetch(cursor)` reads one page and
/// says the next page's cursor, if any.
fn follow<'a, T, F, Fut>(
    first: Option<String>,
    fetch: F,
) -> impl Stream<Item = Result<T, Error>> + 'a
where
    T: 'a,
    F: FnMut(Option<String>) -> Fut + 'a,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), Error>> + 'a,
{
    let state = Pages {
        next: Some(first),
        buffered: VecDeque::new(),
        fetch,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(entry) = state.buffered.pop_front() {
                return Some((Ok(entry), state));
            }
            let cursor = state.next.take()?;
            match (state.fetch)(cursor).await {
                Ok((entries, next)) => {
                    state.buffered.extend(entries);
                    state.next = next.map(Some);
                }
                Err(error) => return Some((Err(error), state)),
            }
        }
    })
}
