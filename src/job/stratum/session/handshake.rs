//! The handshake, and the optional requests a pool may not take: sent,
//! awaited or watched, and left out for that pool when it refuses them,
//! ignores them before authorizing the miner, or hangs up on them.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::super::replies::{configure_params, granted_version_mask, subscribe_params, Reply};
use super::{Connection, End, Optional, Request};

impl Connection<'_> {
    pub(super) async fn handshake(&mut self) -> Result<(), End> {
        if self.options.version_rolling && !self.leaves_out(Optional::Configure) {
            // Answered before anything else is sent: a pool that hangs up on
            // it (ckpool, before a subscription) may drop replies it had
            // queued, and only then is it clear which request it refused.
            let id = self
                .optional(Optional::Configure, configure_params())
                .await?;
            self.await_answer(id, Optional::Configure).await?;
        }
        let resume = self.carry.session_ids[self.pool_index].clone();
        self.request(
            "mining.subscribe",
            subscribe_params(&self.options.agent, resume.as_deref()),
            Request::Subscribe,
        )
        .await?;
        if let Some(d) = self.options.suggest_difficulty {
            if !self.leaves_out(Optional::SuggestDifficulty) {
                self.optional(Optional::SuggestDifficulty, json!([d]))
                    .await?;
            }
        }
        let params = json!([self.pool.user, self.pool.password]);
        self.request("mining.authorize", params, Request::Authorize)
            .await
    }

    /// An optional request (suggest_difficulty, extranonce.subscribe)
    /// unanswered for `optional_answer`: while the pool has not authorized
    /// the miner it is what holds the pool up (leave it out and reconnect);
    /// after, silence only means the pool takes it as a notification.
    pub(super) fn check_optionals(&mut self) -> Result<(), End> {
        let wait = self.options.timeouts.optional_answer;
        let overdue: Vec<(u64, Optional)> = self
            .requests
            .iter()
            .filter_map(|(id, r)| match r {
                Request::Optional { which, sent } if sent.elapsed() > wait => Some((*id, *which)),
                _ => None,
            })
            .collect();
        for (id, which) in overdue {
            self.requests.remove(&id);
            if !self.authorized {
                let url = self.url();
                let why = format!("no answer in {wait:?}");
                self.carry.leave_out(self.pool_index, &url, which, &why);
                return Err(End::Fallback(which));
            }
        }
        Ok(())
    }

    /// The pool hung up with an optional request just sent and unanswered
    /// (or before authorizing the miner): that request is the likely
    /// reason. The earliest such request is left out from now on.
    pub(super) fn blame_optional(&mut self, end: End) -> End {
        let End::Lost { reason, healthy } = end else {
            return end;
        };
        let wait = self.options.timeouts.optional_answer;
        let suspect = self
            .requests
            .iter()
            .filter_map(|(id, r)| match r {
                Request::Optional { which, sent } if !self.authorized || sent.elapsed() <= wait => {
                    Some((*id, *which))
                }
                _ => None,
            })
            .min_by_key(|(id, _)| *id);
        match suspect {
            Some((_, which)) => {
                let url = self.url();
                self.carry.leave_out(self.pool_index, &url, which, &reason);
                End::Fallback(which)
            }
            None => End::Lost { reason, healthy },
        }
    }

    /// Sends an optional request; returns its id.
    pub(super) async fn optional(&mut self, which: Optional, params: Value) -> Result<u64, End> {
        let kind = Request::Optional {
            which,
            sent: Instant::now(),
        };
        self.request(which.method(), params, kind).await?;
        Ok(self.next_id - 1)
    }

    /// Reads the pool until request `id` is answered; unanswered within
    /// `optional_answer`, it is left out and the miner reconnects.
    pub(super) async fn await_answer(&mut self, id: u64, which: Optional) -> Result<(), End> {
        let wait = self.options.timeouts.optional_answer;
        let deadline = tokio::time::Instant::now() + wait;
        while self.requests.contains_key(&id) {
            tokio::select! {
                line = self.lines.next() => self.on_line(line).await?,
                _ = tokio::time::sleep_until(deadline) => {
                    let url = self.url();
                    let why = format!("no answer in {wait:?}");
                    self.carry.leave_out(self.pool_index, &url, which, &why);
                    return Err(End::Fallback(which));
                }
            }
        }
        Ok(())
    }

    pub(super) fn leaves_out(&self, which: Optional) -> bool {
        self.carry.leaves_out(self.pool_index, which)
    }

    pub(super) fn on_optional_reply(&mut self, which: Optional, reply: &Reply) {
        if reply.error.is_some() || reply.result == Value::Bool(false) {
            let why = format!("the pool refused it ({})", reply.reason());
            let url = self.url();
            self.carry.leave_out(self.pool_index, &url, which, &why);
            return;
        }
        if which == Optional::Configure {
            self.granted_mask = granted_version_mask(reply).unwrap_or(0);
            self.version_mask = self.granted_mask;
            match self.granted_mask {
                0 => tracing::info!("{}: no version rolling", self.url()),
                m => tracing::info!("{}: version rolling, mask {m:08x}", self.url()),
            }
        }
    }
}
